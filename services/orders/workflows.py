"""order_workflow and its activities.

The workflow orchestrates and nothing else: no I/O, no wall clock (time comes from the context), no
randomness; the policy comes in its input, with the exchange rates and minor units it needs,
and nothing is looked up elsewhere (not even in babel), so replay depends on the input alone.
Business outcomes are return values; an invalid order ends as `rejected` with reason
`invalid_order`, never as a FAILED workflow.

The tier is decided on the order's exact value in the policy's base currency. An order started
by an earlier release is replayed the way it started, so it keeps its tier: one that routed by
the raw number (its snapshot has `currencies` but no `base_currency`) is tiered on that, one
that compared the rounded value (no `tier_basis`) on that (`contracts.policy.PolicySnapshot`).

Activities do the side effects, idempotently: every message they publish has a stable id, and
every step is written to the order record (orders.readmodel) before it is announced. When the
approval escalates, the orders app raises `approval_stage` (the signed ApprovalRequested of the
new stage) and the workflow records the new stage, tier and deadline.

An operator cancels an order (POST /orders/{id}/cancel) by raising `cancel` into its workflow,
which takes it wherever it waits for its approval: it closes the approval (an ApprovalCancelled
on `approval-cancellations`; the approvals workflow ends it as `cancelled`), announces
`cancelled` on `order-status`, and ends normally with that outcome. Nothing else needs undoing:
an order is fulfilled only once approved, and an approved order takes no cancellation.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Generator
from datetime import datetime
from typing import Any

from dapr.ext.workflow import when_any
from pydantic import BaseModel, ValidationError

from contracts.messages import (
    TRUSTED,
    ApprovalCancelled,
    ApprovalOutcome,
    ApprovalRequested,
    OrderPlaced,
    OrderStatus,
    OrderStatusChanged,
    Outcome,
    describe_errors,
)
from contracts.money import MoneyError, Valuation
from contracts.policy import PolicySnapshot, covers
from contracts.timestamps import rfc3339
from contracts.topics import APPROVAL_CANCELLATIONS, APPROVAL_REQUESTS, ORDER_STATUS
from control.instances import TRACK_INSTANCE, tracked
from orders.readmodel import ApprovalStage, OrderRecord, RecordStatus, load, save
from plumbing.gateway import Gateway
from plumbing.workflow import activity, now

log = logging.getLogger(__name__)

ORDER_WORKFLOW = "order_workflow"
APPROVAL_OUTCOME_EVENT = "approval_outcome"
APPROVAL_STAGE_EVENT = "approval_stage"
CANCEL_EVENT = "cancel"
# The version mark (`ctx.is_patched`) of workflows that take the cancel event.
CANCEL_PATCH = "cancel"
PUBLISH_STATUS = "publish_order_status"
RECORD_ORDER = "record_order"
REQUEST_APPROVAL = "request_approval"
FULFIL_ORDER = "fulfil_order"
CLOSE_APPROVAL = "close_approval"
INSTANCE_PREFIX = "order-"


def instance_id(order_id: str) -> str:
    return f"{INSTANCE_PREFIX}{order_id}"


class OrderInput(BaseModel):
    """Workflow input: the order as received and the policy in force when it arrived."""

    order: dict[str, Any]
    policy: dict[str, Any]


class Cancellation(BaseModel):
    """The `cancel` event's data: who cancelled the order, why, and when they asked."""

    by: str
    reason: str
    at: datetime


class OrderResult(BaseModel):
    order_id: str
    status: OrderStatus
    reason: str = ""
    decided_by: str = ""
    tier: str | None = None
    # What the order was worth in the base currency, and the rate that decided the tier.
    valuation: Valuation | None = None


def order_workflow(ctx: Any, raw: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    """received -> tier -> (auto | request approval, wait for outcome or backstop) -> result."""
    result = yield from _order(ctx, raw)
    yield activity(ctx, TRACK_INSTANCE, tracked(ctx, ORDER_WORKFLOW, "COMPLETED"))
    return result


def _order(ctx: Any, raw: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    inp = OrderInput.model_validate(raw)
    snap = PolicySnapshot.read(inp.policy)
    policy = snap.policy
    order_id = str(inp.order.get("order_id") or ctx.instance_id.removeprefix(INSTANCE_PREFIX))
    # What the order record learns with every step: the order as it was accepted.
    summary: dict[str, Any] = {}

    def status(value: OrderStatus, detail: str = "", **record: Any) -> Any:
        msg = OrderStatusChanged(order_id=order_id, status=value, at=now(ctx), detail=detail)
        step = msg.model_dump(mode="json") | {"record": summary | record}
        return activity(ctx, PUBLISH_STATUS, step)

    worth: Valuation | None = None

    def result(
        value: OrderStatus, reason: str, decided_by: str = "", tier: str | None = None
    ) -> dict[str, Any]:
        ctx.set_custom_status(f"{value.value}" + (f": {reason}" if reason else ""))
        return OrderResult(
            order_id=order_id,
            status=value,
            reason=reason,
            decided_by=decided_by,
            tier=tier,
            valuation=worth,
        ).model_dump(mode="json")

    try:
        order = OrderPlaced.model_validate(inp.order, context=snap.limits)
        worth = snap.value(order.amount, order.currency)
    except (ValidationError, MoneyError) as exc:
        problem = describe_errors(exc) if isinstance(exc, ValidationError) else str(exc)
        reason = f"invalid_order: {problem}"
        if not ctx.is_replaying:
            log.warning("order %s rejected: %s", order_id, reason)
        done = result(OrderStatus.REJECTED, "invalid_order")
        # An unusable order id leaves nothing to publish the status under.
        with contextlib.suppress(ValidationError):
            yield status(OrderStatus.REJECTED, reason, result=done)
        return done

    price = snap.describe(order.amount, order.currency, worth)
    summary.update(
        customer_id=order.customer_id,
        amount=str(order.amount),
        currency=order.currency,
        amount_text=price,
        valuation=worth.model_dump(mode="json") if worth else None,
        placed_at=rfc3339(order.placed_at),
    )
    yield status(OrderStatus.RECEIVED, price)
    tier = snap.tier(order.amount, order.currency)
    outcome: ApprovalOutcome | None
    if tier is None:
        outcome = ApprovalOutcome(
            order_id=order.order_id,
            outcome=Outcome.APPROVED,
            decided_by="policy",
            reason="auto_approved",
            decided_at=now(ctx),
        )
    else:
        due = now(ctx) + policy.deadline_for(tier)
        # The order was checked against the snapshot above; without TRUSTED, pydantic would
        # check it again against the default limits, which know no BHD or IQD.
        request = ApprovalRequested.model_validate(
            {
                "request_id": ApprovalRequested.make_id(order.order_id, 1, tier),
                "order_id": order.order_id,
                "customer_id": order.customer_id,
                "amount": order.amount,
                "currency": order.currency,
                "tier": tier,
                "stage": 1,
                "due_at": due,
                "reason": f"{price} needs {tier.value} approval",
                "valuation": worth,
            },
            context=TRUSTED,
        )
        ctx.set_custom_status(_awaiting(request))
        yield activity(ctx, REQUEST_APPROVAL, request.model_dump(mode="json"))
        yield status(
            OrderStatus.AWAITING_APPROVAL,
            f"{tier.value} approval due {rfc3339(due)}",
            approval=_stage_of(request).model_dump(mode="json"),
        )
        backstop = ctx.create_timer(now(ctx) + policy.order_backstop)
        # One waiter per event name at a time, reused until it fires: durabletask hands an
        # event to the oldest pending waiter, so an abandoned one would swallow the next.
        event = ctx.wait_for_external_event(APPROVAL_OUTCOME_EVENT)
        stage_event = ctx.wait_for_external_event(APPROVAL_STAGE_EVENT)
        # Versioned: an order that was already waiting when cancellation came has no such
        # waiter (its history records no patch), and cannot be cancelled; only terminated.
        cancel = ctx.wait_for_external_event(CANCEL_EVENT) if ctx.is_patched(CANCEL_PATCH) else None
        stage = 1
        outcome = None
        while outcome is None:
            waits = [event, stage_event, backstop] + ([cancel] if cancel is not None else [])
            winner = yield when_any(waits)
            if cancel is not None and winner is cancel:
                closing = _parse_cancel(cancel.get_result(), order.order_id, now(ctx))
                if closing is None:
                    if not ctx.is_replaying:
                        log.warning("order %s: ignored a malformed cancel event", order_id)
                    cancel = ctx.wait_for_external_event(CANCEL_EVENT)
                    continue
                yield activity(ctx, CLOSE_APPROVAL, closing.model_dump(mode="json"))
                by, why = closing.cancelled_by, closing.reason
                done = result(OrderStatus.CANCELLED, why, by, tier.value)
                detail = f"cancelled by {by}: {why}"
                yield status(OrderStatus.CANCELLED, detail, result=done)
                return done
            if winner is backstop:
                outcome = ApprovalOutcome(
                    order_id=order.order_id,
                    outcome=Outcome.EXPIRED,
                    decided_by="policy",
                    reason="approval_timeout",
                    decided_at=now(ctx),
                )
                break
            if winner is stage_event:
                nxt = _parse_stage(stage_event.get_result(), order.order_id)
                stage_event = ctx.wait_for_external_event(APPROVAL_STAGE_EVENT)
                if nxt is not None and nxt.stage > stage:
                    stage = nxt.stage
                    ctx.set_custom_status(_awaiting(nxt))
                    yield activity(ctx, RECORD_ORDER, _escalated(nxt, now(ctx)))
                continue
            outcome = _parse_outcome(event.get_result(), order.order_id)
            if outcome is None and not ctx.is_replaying:
                log.warning("order %s: ignored a malformed approval outcome", order.order_id)
            # An approval counts only at the level this order needs: an approval workflow
            # started from a forged, lower-tier request cannot approve a VP-sized order.
            if (
                outcome is not None
                and outcome.outcome is Outcome.APPROVED
                and not covers(outcome.tier, tier)
            ):
                if not ctx.is_replaying:
                    log.warning(
                        "order %s: ignored an approval at level %s; it needs %s",
                        order.order_id,
                        outcome.tier,
                        tier.value,
                    )
                outcome = None
            if outcome is None:
                event = ctx.wait_for_external_event(APPROVAL_OUTCOME_EVENT)

    assert outcome is not None
    tier_name = tier.value if tier else None
    if outcome.outcome is Outcome.APPROVED:
        yield status(OrderStatus.APPROVED, f"by {outcome.decided_by}: {outcome.reason}".strip())
        yield activity(ctx, FULFIL_ORDER, order.model_dump(mode="json"))
        done = result(OrderStatus.COMPLETED, outcome.reason, outcome.decided_by, tier_name)
        yield status(OrderStatus.COMPLETED, result=done)
        return done
    final = OrderStatus.EXPIRED if outcome.outcome is Outcome.EXPIRED else OrderStatus.REJECTED
    done = result(final, outcome.reason, outcome.decided_by, tier_name)
    yield status(final, outcome.reason, result=done)
    return done


def _awaiting(request: ApprovalRequested) -> str:
    """The custom status while the order waits for `request`'s approvers."""
    return (
        f"awaiting {request.tier.value} approval (stage {request.stage}), "
        f"due {rfc3339(request.due_at)}"
    )


def _stage_of(request: ApprovalRequested) -> ApprovalStage:
    return ApprovalStage(stage=request.stage, tier=request.tier, due_at=request.due_at)


def _escalated(request: ApprovalRequested, at: datetime) -> dict[str, Any]:
    """The order record's change when its approval moves on to `request`'s stage."""
    return OrderRecord(
        order_id=request.order_id,
        status=RecordStatus.AWAITING_APPROVAL,
        detail=f"{request.tier.value} approval due {rfc3339(request.due_at)} "
        f"(stage {request.stage}): {request.reason}".strip(),
        approval=_stage_of(request),
        updated_at=at,
    ).model_dump(mode="json", exclude_unset=True)


def _parse_stage(data: Any, order_id: str) -> ApprovalRequested | None:
    """A later approval stage of this order, or None when the event is not one (ignored)."""
    try:
        request = ApprovalRequested.model_validate(data, context=TRUSTED)
    except ValidationError:
        return None
    return request if request.order_id == order_id else None


def _parse_cancel(data: Any, order_id: str, at: datetime) -> ApprovalCancelled | None:
    """The approval's closing for this cancellation, or None when the event is not one (it is
    then ignored): it must also fit ApprovalCancelled's limits (a `by` of at most 128
    characters, a non-empty reason), or closing the approval would fail the workflow."""
    try:
        stop = Cancellation.model_validate(data)
        return ApprovalCancelled(
            order_id=order_id, cancelled_by=stop.by, reason=stop.reason, cancelled_at=at
        )
    except ValidationError:
        return None


def _parse_outcome(data: Any, order_id: str) -> ApprovalOutcome | None:
    """An outcome for this order, or None when the event is not one (it is then ignored)."""
    try:
        outcome = ApprovalOutcome.model_validate(data)
    except ValidationError:
        return None
    return outcome if outcome.order_id == order_id else None


def make_activities(gateway: Gateway) -> dict[str, Callable[..., Any]]:
    """The order activities, bound to this app's gateway; registered by name."""

    def publish_order_status(ctx: Any, data: dict[str, Any]) -> None:
        """Record the step in the order record, then announce it on `order-status`."""
        step = dict(data)
        learnt = step.pop("record", None) or {}  # absent in steps scheduled before records
        msg = OrderStatusChanged.model_validate(step)
        change = learnt | {
            "order_id": msg.order_id,
            "status": msg.status.value,
            "detail": msg.detail,
            "updated_at": msg.at,
        }
        save(gateway.state, OrderRecord.model_validate(change))
        if msg.customer_id is None and (record := load(gateway.state, msg.order_id)):
            msg = msg.model_copy(update={"customer_id": record.customer_id})  # for the e-mail
        gateway.publisher.publish(ORDER_STATUS, msg)
        gateway.metrics.order_status(msg.status.value)

    def record_order(ctx: Any, data: dict[str, Any]) -> None:
        save(gateway.state, OrderRecord.model_validate(data))

    def request_approval(ctx: Any, data: dict[str, Any]) -> None:
        gateway.publisher.publish(
            APPROVAL_REQUESTS, ApprovalRequested.model_validate(data, context=TRUSTED)
        )

    def close_approval(ctx: Any, data: dict[str, Any]) -> None:
        gateway.publisher.publish(APPROVAL_CANCELLATIONS, ApprovalCancelled.model_validate(data))

    def fulfil_order(ctx: Any, data: dict[str, Any]) -> dict[str, Any]:
        order = OrderPlaced.model_validate(data, context=TRUSTED)
        record = {
            "order_id": order.order_id,
            "amount": str(order.amount),
            "currency": order.currency,
            "items": [i.model_dump() for i in order.items],
        }
        # An activity runs at least once (again after a crash before its completion was
        # recorded): the first run's record wins, and a repeat ships nothing twice.
        key = f"fulfilment:{order.order_id}"
        if not gateway.state.claim(key, record):
            log.info("order %s was fulfilled already; not again", order.order_id)
            return dict(gateway.state.get(key)[0] or record)
        return record

    return {
        PUBLISH_STATUS: publish_order_status,
        RECORD_ORDER: record_order,
        REQUEST_APPROVAL: request_approval,
        FULFIL_ORDER: fulfil_order,
        CLOSE_APPROVAL: close_approval,
    }
