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

Since the lean release (version mark `lean`), the steps that follow one another without a
wait between them run as one activity (`advance_order`): an auto-approved order runs one
activity instead of five, an order that needs approval one to ask and one to end. Each
activity is a round trip through the sidecar, the scheduler and the state store, which is
where an order's time went (docs/architecture.md, "Performance"). Orders started before the
release replay their steps one activity each, as they were recorded.

An operator cancels an order (POST /orders/{id}/cancel) by raising `cancel` into its workflow,
which takes it wherever it waits for its approval: it closes the approval (an ApprovalCancelled
on `approval-cancellations`; the approvals workflow ends it as `cancelled`), announces
`cancelled` on `order-status`, and ends normally with that outcome. Nothing else needs undoing:
an order is fulfilled only once approved, and an approved order takes no cancellation.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Generator
from datetime import datetime, timedelta
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
from control.instances import TRACK_INSTANCE, tracked
from orders.readmodel import ApprovalStage, OrderRecord, RecordStatus
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
ADVANCE_ORDER = "advance_order"
# The version mark of workflows that run consecutive steps as one `advance_order` activity.
LEAN_PATCH = "lean"
# Before the lean release, each step was an activity of its own (and the index's update the
# wrapper's last activity): the kinds of step and the activity each one was.
STEP_ACTIVITIES = {
    "status": PUBLISH_STATUS,
    "request": REQUEST_APPROVAL,
    "fulfil": FULFIL_ORDER,
    "close": CLOSE_APPROVAL,
    "track": TRACK_INSTANCE,
}
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
    lean = ctx.is_patched(LEAN_PATCH)
    result = yield from _order(ctx, raw, lean)
    if not lean:  # a lean order's last step updated the index
        yield activity(ctx, TRACK_INSTANCE, tracked(ctx, ORDER_WORKFLOW, "COMPLETED"))
    return result


Step = tuple[str, Any]


def _order(ctx: Any, raw: dict[str, Any], lean: bool) -> Generator[Any, Any, dict[str, Any]]:
    inp = OrderInput.model_validate(raw)
    snap = PolicySnapshot.read(inp.policy)
    policy = snap.policy
    order_id = str(inp.order.get("order_id") or ctx.instance_id.removeprefix(INSTANCE_PREFIX))
    # What the order record learns with every step: the order as it was accepted.
    summary: dict[str, Any] = {}

    # A lean order says several statuses at one moment of the workflow: each is a microsecond
    # after the one before, so their times still tell their order.
    ticks = itertools.count() if lean else itertools.repeat(0)

    def status(value: OrderStatus, detail: str = "", **record: Any) -> Step:
        at = now(ctx) + timedelta(microseconds=next(ticks))
        msg = OrderStatusChanged(order_id=order_id, status=value, at=at, detail=detail)
        return "status", msg.model_dump(mode="json") | {"record": summary | record}

    def steps(*todo: Callable[[], Step], last: bool = False) -> Generator[Any, Any, None]:
        """Run the steps in order: as one activity (lean), or one activity each, each made
        just before it runs (its time is the time it ran, as it was recorded)."""
        if not lean:
            for make in todo:
                kind, data = make()
                yield activity(ctx, STEP_ACTIVITIES[kind], data)
            return
        made = [make() for make in todo]
        if last:
            made.append(("track", tracked(ctx, ORDER_WORKFLOW, "COMPLETED")))
        yield activity(ctx, ADVANCE_ORDER, [{"kind": k, "data": d} for k, d in made])

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
        try:
            rejected = status(OrderStatus.REJECTED, reason, result=done)
        except ValidationError:
            yield from steps(last=True)
        else:
            yield from steps(lambda: rejected, last=True)
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
    received: tuple[Callable[[], Step], ...] = (lambda: status(OrderStatus.RECEIVED, price),)
    if not lean:  # one activity of its own; a lean order says it with the next steps
        yield from steps(*received)
        received = ()
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
        yield from steps(
            *received,
            _given("request", request.model_dump(mode="json")),
            lambda: status(
                OrderStatus.AWAITING_APPROVAL,
                f"{tier.value} approval due {rfc3339(due)}",
                approval=_stage_of(request).model_dump(mode="json"),
            ),
        )
        received = ()
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
                by, why = closing.cancelled_by, closing.reason
                done = result(OrderStatus.CANCELLED, why, by, tier.value)
                detail = f"cancelled by {by}: {why}"
                said = functools.partial(status, OrderStatus.CANCELLED, detail, result=done)
                yield from steps(_given("close", closing.model_dump(mode="json")), said, last=True)
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
        approved = outcome
        fulfilled: dict[str, Any] = {}

        def completed() -> Step:
            fulfilled.update(
                result(OrderStatus.COMPLETED, approved.reason, approved.decided_by, tier_name)
            )
            return status(OrderStatus.COMPLETED, result=dict(fulfilled))

        yield from steps(
            *received,
            lambda: status(
                OrderStatus.APPROVED, f"by {approved.decided_by}: {approved.reason}".strip()
            ),
            _given("fulfil", order.model_dump(mode="json")),
            completed,
            last=True,
        )
        return fulfilled
    final = OrderStatus.EXPIRED if outcome.outcome is Outcome.EXPIRED else OrderStatus.REJECTED
    ended = result(final, outcome.reason, outcome.decided_by, tier_name)
    why = outcome.reason
    yield from steps(lambda: status(final, why, result=ended), last=True)
    return ended


def _given(kind: str, data: Any) -> Callable[[], Step]:
    """A step whose data is known already."""
    return lambda: (kind, data)


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
