"""orders: subscriptions (orders, approval-outcomes) and the order HTTP API."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from dapr.ext.fastapi import DaprApp
from fastapi import APIRouter, FastAPI, Request
from pydantic import ValidationError

from contracts.messages import ApprovalOutcome, BusinessId, OrderPlaced, describe_errors
from contracts.money import describe_price
from contracts.topics import APPROVAL_OUTCOMES, ORDERS
from control import instances
from control.auditing import audited
from control.management import WorkflowRules, describe, management_router
from orders.workflows import (
    APPROVAL_OUTCOME_EVENT,
    ORDER_WORKFLOW,
    OrderInput,
    instance_id,
)
from plumbing.auth import Operator, Reader
from plumbing.gateway import Gateway, NotFound
from plumbing.settings import ServiceSettings
from plumbing.subscriptions import Answer, keys_of, subscribe
from plumbing.web import GatewayDep, InvalidInput

log = logging.getLogger(__name__)


def seen_key(order_id: str) -> str:
    return f"order-seen:{order_id}"


DUPLICATE = "duplicate order"


def accept_order(gateway: Gateway, settings: ServiceSettings, order: OrderPlaced) -> Answer:
    """Schedule one order_workflow per order id, however often the message arrives."""
    iid = instance_id(order.order_id)
    wf_input = OrderInput(order=order.model_dump(mode="json"), policy=settings.policy.snapshot())
    deadline = datetime.now(UTC) + settings.policy.order_backstop
    if not instances.start_once(
        gateway,
        seen_key(order.order_id),
        ORDER_WORKFLOW,
        iid,
        wf_input.model_dump(mode="json"),
        deadline,
    ):
        return Answer.success(DUPLICATE)
    log.info("order %s: scheduled %s", order.order_id, iid)
    return Answer.success()


def parse_order(data: Any, settings: ServiceSettings) -> OrderPlaced:
    """An OrderPlaced from caller input, under the policy's limits; InvalidInput says why not."""
    try:
        return OrderPlaced.model_validate(data, context=settings.policy.limits)
    except ValidationError as exc:
        raise InvalidInput(describe_errors(exc)) from None


def deliver_outcome(gateway: Gateway, outcome: ApprovalOutcome) -> Answer:
    """Raise the approval outcome into the order's own workflow."""
    assert gateway.workflows is not None
    iid = instance_id(outcome.order_id)
    state = gateway.workflows.state(iid)
    if state is None:
        return Answer.drop(f"no order workflow {iid}")
    if state.status in instances.TERMINAL:
        return Answer.success(f"{iid} already {state.status.lower()}")
    gateway.workflows.raise_event(iid, APPROVAL_OUTCOME_EVENT, outcome.model_dump(mode="json"))
    return Answer.success()


def register(app: FastAPI, dapr_app: DaprApp, settings: ServiceSettings) -> None:
    """Mount the subscriptions and routes on the app."""

    def gw() -> Gateway:
        return app.state.gateway  # type: ignore[no-any-return]

    subscribe(
        dapr_app,
        gw,
        settings,
        topic=ORDERS,
        model=OrderPlaced,
        handler=lambda m: accept_order(gw(), settings, m),
    )
    subscribe(
        dapr_app,
        gw,
        settings,
        topic=APPROVAL_OUTCOMES,
        model=ApprovalOutcome,
        handler=lambda m: deliver_outcome(gw(), m),
        signed_by=keys_of(app, "approvals"),  # outcomes come only from the approvals service
    )

    def start_order(data: Any) -> tuple[str, Any]:
        """An operator starts an order as if it had arrived on the topic: server policy."""
        order = parse_order(data, settings)

        def begin(gateway: Gateway) -> bool:
            return accept_order(gateway, settings, order).reason != DUPLICATE

        return instance_id(order.order_id), begin

    app.include_router(router)
    rules = WorkflowRules(start=start_order, started_by="an OrderPlaced on the orders topic")
    app.include_router(management_router({ORDER_WORKFLOW: rules}))


router = APIRouter(tags=["orders"])


@router.post("/orders", status_code=202)
def place_order(
    body: dict[str, Any], gateway: GatewayDep, request: Request, _: Operator
) -> dict[str, str]:
    """Publish an OrderPlaced to the `orders` topic, as a shop would (placed_at defaults to now).

    The answer shows the amount as accepted (in its currency's minor units) and what it is
    worth in the policy's base currency at the rate in force now.
    """
    settings: ServiceSettings = request.app.state.settings
    body.setdefault("placed_at", datetime.now(UTC).isoformat())
    order = parse_order(body, settings)
    text = describe_price(
        order.amount, order.currency, settings.policy.value(order.amount, order.currency)
    )
    with audited(request, target=order.order_id, reason=text):
        gateway.publisher.publish(ORDERS, order)
    return {
        "order_id": order.order_id,
        "instance_id": instance_id(order.order_id),
        "amount": str(order.amount),
        "currency": order.currency,
        "amount_text": text,
    }


@router.get("/orders/{order_id}")
def get_order(order_id: BusinessId, gateway: GatewayDep, _: Reader) -> dict[str, Any]:
    """The order's workflow: status, custom status, result (its output), times."""
    assert gateway.workflows is not None
    state = gateway.workflows.state(instance_id(order_id), payloads=True)
    if state is None:
        raise NotFound(f"no order {order_id!r}")
    described = describe(state, payloads=True)
    output = described.pop("output")
    status = described.pop("status")
    return {
        "order_id": order_id,
        "workflow_status": status,
        # Only a completed workflow's output is the order's outcome; a terminated one's says
        # who stopped it and why.
        "result": output if status == "COMPLETED" else None,
        "terminated": output if status == "TERMINATED" else None,
        **described,
    }
