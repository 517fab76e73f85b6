"""orders: subscriptions (orders, approval-outcomes, approval-requests) and the order HTTP API."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from dapr.ext.fastapi import DaprApp
from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.messages import (
    TRUSTED,
    ApprovalCancelled,
    ApprovalOutcome,
    ApprovalRequested,
    BusinessId,
    OrderPlaced,
    describe_errors,
)
from contracts.money import describe_price
from contracts.text import PlainText
from contracts.topics import APPROVAL_OUTCOMES, APPROVAL_REQUESTS, ORDERS
from control import instances
from control.auditing import audited, record
from control.management import MAX_WAIT_S, WorkflowRules, mount_management
from orders import readmodel
from orders.domain import NotCancellable, conflict, content_of, differences, why_not_cancel
from orders.readmodel import OrderRecord, RecordStatus
from orders.workflows import (
    APPROVAL_OUTCOME_EVENT,
    APPROVAL_STAGE_EVENT,
    CANCEL_EVENT,
    INSTANCE_PREFIX,
    ORDER_WORKFLOW,
    Cancellation,
    OrderInput,
    instance_id,
)
from plumbing.auth import Operator, Reader
from plumbing.gateway import Gateway, InstanceState, NotFound, StateStore, workflows_of
from plumbing.settings import ServiceSettings
from plumbing.subscriptions import Answer, keys_of, subscribe
from plumbing.web import GatewayDep, InvalidInput, Waiting

log = logging.getLogger(__name__)


def seen_key(order_id: str) -> str:
    return f"order-seen:{order_id}"


DUPLICATE = "duplicate order"


def content_key(order_id: str) -> str:
    return f"order-content:{order_id}"


def claim_content(state: StateStore, order: OrderPlaced) -> tuple[bool, list[str]]:
    """Record what the order id stands for, first come first kept: (recorded by this call,
    how `order` differs from what was recorded before)."""
    content = content_of(order)
    if state.claim(content_key(order.order_id), content):
        return True, []
    first, _ = state.get(content_key(order.order_id))
    return False, differences(first, content) if first else []


def accept_order(gateway: Gateway, settings: ServiceSettings, order: OrderPlaced) -> Answer:
    """Record the order as accepted, then schedule one order_workflow per order id, however
    often the message arrives; the same id with other content is a conflicting duplicate
    (dead-lettered and audited)."""
    first, differ = claim_content(gateway.state, order)
    if differ:
        return Answer.refuse(f"conflicting duplicate: {'; '.join(differ)}")
    iid = instance_id(order.order_id)
    if first:  # the order is new: its record is too (a write cannot take a record back)
        readmodel.create(gateway.state, accepted(order, settings))
    else:
        seen, _ = gateway.state.get(seen_key(order.order_id))
        if (seen or {}).get("status") != "scheduled":  # not a redelivery of a started order
            readmodel.save(gateway.state, accepted(order, settings))
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


def accepted(order: OrderPlaced, settings: ServiceSettings) -> OrderRecord:
    """The order record of an order taken in whose workflow has not started yet."""
    return OrderRecord(
        order_id=order.order_id,
        status=RecordStatus.ACCEPTED,
        detail="accepted; its workflow has not started yet",
        customer_id=order.customer_id,
        amount=str(order.amount),
        currency=order.currency,
        amount_text=price_of(order, settings),
        placed_at=order.placed_at,
        accepted_at=datetime.now(UTC),
        updated_at=datetime.now(UTC),
    )


def price_of(order: OrderPlaced, settings: ServiceSettings) -> str:
    """The amount as every screen shows it, valued at the rate in force now."""
    return describe_price(
        order.amount, order.currency, settings.policy.value(order.amount, order.currency)
    )


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


def follow_approval(gateway: Gateway, request: ApprovalRequested) -> Answer:
    """Tell the order workflow that its approval moved on to a later stage (escalation).

    Stage 1 is the request this app published itself. A later stage comes only from the
    approvals service, signed (the subscription verifies it before this runs)."""
    if request.stage == 1:
        return Answer.success("stage 1 is this app's own request")
    wf = workflows_of(gateway)
    iid = instance_id(request.order_id)
    state = wf.state(iid)
    if state is None:
        return Answer.success(f"no order workflow {iid}; nothing to follow")
    if state.status in instances.TERMINAL:
        return Answer.success(f"{iid} already {state.status.lower()}")
    wf.raise_event(iid, APPROVAL_STAGE_EVENT, request.model_dump(mode="json"))
    return Answer.success()


def keep_outcome(gateway: Gateway, state: InstanceState) -> None:
    """Before an order workflow is purged: its record says how it ended (purge removes the
    history only)."""
    order_id = state.instance_id.removeprefix(INSTANCE_PREFIX)
    full = workflows_of(gateway).state(state.instance_id, payloads=True) or state
    end = readmodel.ending(order_id, full)
    if end is not None:
        readmodel.save(gateway.state, end)


def outcome_kept(gateway: Gateway, instance_ids: list[str]) -> set[str]:
    """The order workflows among these whose record already says how the order ended: purging
    them loses nothing (`keep_outcome` would change nothing)."""
    orders = {
        i.removeprefix(INSTANCE_PREFIX): i for i in instance_ids if i.startswith(INSTANCE_PREFIX)
    }
    return {orders[o] for o in readmodel.ended(gateway.state, list(orders))}


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
    subscribe(
        dapr_app,
        gw,
        settings,
        topic=APPROVAL_REQUESTS,
        model=ApprovalRequested,
        handler=lambda m: follow_approval(gw(), m),
        # Later stages come only from the approvals service; stage 1 is this app's own and
        # is ignored, so only what is acted on must be signed (by approvals, not orders).
        signed_by=keys_of(app, "approvals"),
        signed_if=lambda m: m.stage > 1,
        limits=TRUSTED,  # checked by orders under the policy the order started with
    )

    def start_order(data: Any) -> tuple[str, Any]:
        """An operator starts an order as if it had arrived on the topic: server policy."""
        order = parse_order(data, settings)
        _, differ = claim_content(gw().state, order)
        if differ:
            raise conflict(order.order_id, differ)

        def begin(gateway: Gateway) -> bool:
            return accept_order(gateway, settings, order).reason != DUPLICATE

        return instance_id(order.order_id), begin

    app.include_router(router)
    rules = WorkflowRules(
        start=start_order,
        started_by="an OrderPlaced on the orders topic",
        keep=keep_outcome,
        kept=outcome_kept,
    )
    mount_management(app, {ORDER_WORKFLOW: rules})


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
    text = price_of(order, settings)
    # The subscription claims the id only later: what it stands for is checked here, first.
    recorded, differ = claim_content(gateway.state, order)
    if differ:
        raise conflict(order.order_id, differ)
    try:
        with audited(request, target=order.order_id, reason=text):
            gateway.publisher.publish(ORDERS, order)
    except Exception:
        if recorded:  # not placed after all: a corrected retry must not meet a 409
            gateway.state.delete(content_key(order.order_id))
        raise
    return {
        "order_id": order.order_id,
        "instance_id": instance_id(order.order_id),
        "amount": str(order.amount),
        "currency": order.currency,
        "amount_text": text,
    }


POLL_S = 0.25


@router.get("/orders/{order_id}")
def get_order(
    order_id: BusinessId,
    gateway: GatewayDep,
    _: Reader,
    waiting: Waiting,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_S,
            description="seconds to wait for the order to exist (and reach `until`); at most 60",
        ),
    ] = 0,
    until: Annotated[
        RecordStatus | None,
        Query(description="with `wait`: wait until the order is at this status or past it"),
    ] = None,
) -> dict[str, Any]:
    """The order: its status, approval stage, amount, result and times, from its record,
    brought up to date with its workflow while that exists.

    The system is eventually consistent: an order just placed may not be recorded yet (404).
    `wait` polls until it is, and `until` until it reached a status or a later one on the way
    to completion, or ended another way; `reached` then says whether it got to `until` (an order
    that ended rejected never reaches `completed`) and `ended` whether it has ended."""
    deadline = time.monotonic() + wait
    with waiting.slot(wait):
        while True:
            shown = _read_order(gateway, order_id)
            reached = shown is not None and (until is None or _reached(shown["status"], until))
            ended = shown is not None and RecordStatus(shown["status"]) in readmodel.ENDED
            if reached or ended or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
    if shown is None:
        raise NotFound(f"no order {order_id!r}" + (f" after waiting {wait:g}s" if wait else ""))
    return shown | ({"reached": reached, "ended": ended} if until is not None else {})


def _read_order(gateway: Gateway, order_id: str) -> dict[str, Any] | None:
    iid = instance_id(order_id)
    record = readmodel.load(gateway.state, order_id)
    wf = workflows_of(gateway).state(iid, payloads=True)
    if record is None and wf is None:
        return None
    return readmodel.show(order_id, iid, record, wf)


def _reached(status: str, until: RecordStatus) -> bool:
    """At `until`, or past it on the way to completion (completed is past every step)."""
    now = RecordStatus(status)
    if now == until:
        return True
    if now in readmodel.ENDED:
        return now is RecordStatus.COMPLETED and until not in readmodel.ENDED
    return until not in readmodel.ENDED and readmodel.rank(now) >= readmodel.rank(until)


class CancelBody(BaseModel):
    """Why the order is cancelled (required; audited, and told to the approvers' inbox)."""

    model_config = ConfigDict(extra="forbid")
    reason: Annotated[PlainText, Field(min_length=1, max_length=500)]


def cancel_key(order_id: str) -> str:
    return f"order-cancel:{order_id}"


def takes_cancel(history: list[dict[str, Any]]) -> bool:
    """Whether the order workflow waits (or will wait) for the cancel event: one that already
    waits for its approval without a cancel waiter started before cancellation existed."""
    waits = {str(r.get("waits_for", "")).casefold() for r in history}
    return CANCEL_EVENT in waits or APPROVAL_OUTCOME_EVENT not in waits


@router.post("/orders/{order_id}/cancel", status_code=202)
def cancel_order(
    order_id: BusinessId,
    body: CancelBody,
    gateway: GatewayDep,
    request: Request,
    operator: Operator,
) -> dict[str, Any]:
    """Cancel an order: its workflow closes the open approval, tells the customer and ends
    `cancelled`. A finished or approved order is a 409 that says why; so is one whose workflow
    cannot take the event (stuck or failing: terminate that instead)."""
    shown = _read_order(gateway, order_id)
    if shown is None:
        raise NotFound(f"no order {order_id!r}")
    iid = instance_id(order_id)
    wf_status = shown["workflow_status"]
    history = workflows_of(gateway).history(iid) if wf_status in ("RUNNING", "SUSPENDED") else []
    problem = why_not_cancel(order_id, shown["status"], wf_status, takes_cancel(history))
    if problem:
        raise NotCancellable(problem)
    asked = Cancellation(by=operator.id, reason=body.reason, at=datetime.now(UTC))
    try:  # the workflow would ignore a cancel its approval's closing cannot carry
        ApprovalCancelled(
            order_id=order_id, cancelled_by=asked.by, reason=asked.reason, cancelled_at=asked.at
        )
    except ValidationError as exc:
        raise NotCancellable(f"cannot record this cancellation: {describe_errors(exc)}") from exc
    answer = {"order_id": order_id, "instance_id": iid, "status": "cancelling"}
    first, _ = gateway.state.get(cancel_key(order_id))
    if first is not None:
        record(request, target=order_id, outcome="ok: already requested", reason=body.reason)
        return answer | {"detail": f"cancellation already requested by {first.get('by')}"}
    # Raised first, recorded after: a crash in between leaves no record, so asking again
    # raises again, which is harmless (a workflow that ended at the first cancel drops the
    # second). The record only spares a double click a second raise.
    with audited(request, target=order_id, outcome="ok: requested", reason=body.reason):
        workflows_of(gateway).raise_event(iid, CANCEL_EVENT, asked.model_dump(mode="json"))
    try:
        gateway.state.claim(cancel_key(order_id), asked.model_dump(mode="json"))
    except Exception as exc:  # raised already: the answer stays true without the record
        log.warning("order %s: cancellation raised but not recorded: %s", order_id, exc)
    later = " once it is resumed" if wf_status == "SUSPENDED" else ""
    return answer | {
        "detail": "cancellation requested: its workflow takes it if it still waits for its "
        f"approval{later}"
    }
