"""approval_workflow (one per order, "approval-<order_id>") and its activities.

For each stage the workflow races the next `decision` event against the stage deadline. A
decision from someone without authority, a malformed one, or a duplicate (same decision_id) is
written to the decision log and the wait goes on against the same deadline. On a manager
timeout the policy says escalate (a new VP stage, announced with a new ApprovalRequested) or
reject; on the last stage's timeout the approval expires. The end is one ApprovalOutcome.

The policy comes from the input's snapshot, read as `contracts.policy.PolicySnapshot` reads
it, so an approval started by an earlier release replays under the rules it started with.

One `decision` waiter is pending at a time and reused across deadline changes: durabletask
hands an event to the oldest pending waiter, so an abandoned waiter would swallow the next one.

Reminders: when the policy says `reminder_before` (and the stage is long enough), a second
timer per stage fires that long before the deadline and the stage's approvers are reminded
once (ApprovalReminded on approval-reminders). A snapshot from before reminders reads as
`reminder_before` 0, so approvals started then replay without the timer they never had.

When its order is cancelled, the approvals app raises `cancel` (the ApprovalCancelled from
orders): the approval ends `cancelled`, undecided, and leaves the inbox; no outcome is published
(the order has ended already) and no reminder follows (the workflow has ended, its timers with
it). Approvals that were waiting before this existed carry no version mark (`ctx.is_patched`)
and keep waiting without a cancel waiter. The reminder timer is created before the decision and
cancel waiters, so an approval with both keeps the ids of each recording without the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any, Literal

from dapr.ext.workflow import when_any
from pydantic import BaseModel, ValidationError

from approvals.domain import ApprovalView, LogEntry, decision_time
from approvals.readmodel import save_view
from contracts.messages import (
    TRUSTED,
    ApprovalCancelled,
    ApprovalOutcome,
    ApprovalReminded,
    ApprovalRequested,
    DecisionSubmitted,
    Outcome,
    Tier,
)
from contracts.policy import OnManagerTimeout, PolicySnapshot, authority_problem
from contracts.timestamps import rfc3339
from contracts.topics import APPROVAL_OUTCOMES, APPROVAL_REMINDERS, APPROVAL_REQUESTS
from control.instances import TRACK_INSTANCE, tracked
from plumbing.gateway import Gateway
from plumbing.workflow import activity, now

log = logging.getLogger(__name__)

APPROVAL_WORKFLOW = "approval_workflow"
DECISION_EVENT = "decision"
CANCEL_EVENT = "cancel"
CANCEL_PATCH = "cancel"  # the version mark of approvals that take the cancel event
PUBLISH_OUTCOME = "publish_approval_outcome"
REQUEST_NEXT_STAGE = "request_next_stage"
REMIND_APPROVERS = "remind_approvers"
RECORD_APPROVAL = "record_approval"
INSTANCE_PREFIX = "approval-"


def instance_id(order_id: str) -> str:
    return f"{INSTANCE_PREFIX}{order_id}"


class ApprovalInput(BaseModel):
    request: dict[str, Any]
    policy: dict[str, Any]


class ApprovalResult(BaseModel):
    order_id: str
    outcome: Outcome | Literal["cancelled"]
    decided_by: str
    reason: str
    stages: int
    log: list[LogEntry]


def approval_workflow(ctx: Any, raw: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    """Stages with deadlines, authority checks and escalation, ending in one outcome."""
    result = yield from _approval(ctx, raw)
    yield activity(ctx, TRACK_INSTANCE, tracked(ctx, APPROVAL_WORKFLOW, "COMPLETED"))
    return result


def _approval(ctx: Any, raw: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
    inp = ApprovalInput.model_validate(raw)
    policy = PolicySnapshot.read(inp.policy).policy
    req = ApprovalRequested.model_validate(inp.request, context=TRUSTED)
    tier, stage, due = req.tier, req.stage, req.due_at
    entries: list[LogEntry] = []
    seen: set[str] = set()

    def note(kind: str, text: str = "", d: DecisionSubmitted | None = None) -> None:
        entries.append(
            LogEntry(
                at=now(ctx),
                kind=kind,
                stage=stage,
                tier=tier,
                note=text,
                decision_id=d.decision_id if d else None,
                approver_id=d.approver_id if d else None,
                approved=d.approved if d else None,
            )
        )

    def view(status: str, decided_by: str | None = None, reason: str = "") -> dict[str, Any]:
        # Without amount_text: formatting it asks babel, which a replay must not depend on;
        # the read model computes it whenever the view is read.
        return ApprovalView(
            order_id=req.order_id,
            customer_id=req.customer_id,
            amount=str(req.amount),
            currency=req.currency,
            valuation=req.valuation,
            status=status,
            tier=tier,
            stage=stage,
            due_at=due,
            decided_by=decided_by,
            reason=reason,
            log=entries,
        ).model_dump(mode="json", exclude={"amount_text"})

    def this_stage(request_id: str, reason: str) -> dict[str, Any]:
        """The request as the current stage stands, under another id and reason."""
        update = {"tier": tier, "stage": stage, "due_at": due}
        return req.model_copy(
            update={**update, "request_id": request_id, "reason": reason}
        ).model_dump(mode="json")

    def reminder() -> Any:
        """The stage's reminder timer, or None: no reminders, or too late for one."""
        at = due - policy.reminder_before
        return ctx.create_timer(at) if policy.reminder_before and at > now(ctx) else None

    note("requested", req.reason)
    yield activity(ctx, RECORD_APPROVAL, view("pending"))
    deadline = ctx.create_timer(due)
    remind = reminder()
    waiting = ctx.wait_for_external_event(DECISION_EVENT)
    cancel = ctx.wait_for_external_event(CANCEL_EVENT) if ctx.is_patched(CANCEL_PATCH) else None
    while True:
        ctx.set_custom_status(f"awaiting {tier.value} decision (stage {stage}), due {rfc3339(due)}")
        racing = [waiting, deadline, *([remind] if remind else []), *([cancel] if cancel else [])]
        winner = yield when_any(racing)
        if cancel is not None and winner is cancel:
            stop = _parse_cancel(cancel.get_result(), req.order_id)
            if stop is None:
                note("malformed", "a cancel event that is not this order's ApprovalCancelled")
                cancel = ctx.wait_for_external_event(CANCEL_EVENT)
                continue
            note("cancelled", f"the order was cancelled by {stop.cancelled_by}: {stop.reason}")
            ctx.set_custom_status(f"cancelled by {stop.cancelled_by}")
            yield activity(ctx, RECORD_APPROVAL, view("cancelled", stop.cancelled_by, stop.reason))
            return ApprovalResult(
                order_id=req.order_id,
                outcome="cancelled",
                decided_by=stop.cancelled_by,
                reason=stop.reason,
                stages=stage,
                log=entries,
            ).model_dump(mode="json")
        if remind is not None and winner is remind:
            remind = None
            note("reminded", f"{tier.value} approvers reminded; due {rfc3339(due)}")
            again = this_stage(
                ApprovalReminded.reminder_id(req.order_id, stage, tier),
                f"a reminder: nobody has decided yet, and it is due {rfc3339(due)}",
            )
            yield activity(ctx, REMIND_APPROVERS, again)
            yield activity(ctx, RECORD_APPROVAL, view("pending"))
            continue
        if winner is deadline:
            escalate = (
                tier is Tier.MANAGER
                and policy.on_manager_timeout is OnManagerTimeout.ESCALATE_TO_VP
            )
            if escalate:
                note("timed_out", "manager deadline passed; escalating to a VP")
                stage, tier = stage + 1, Tier.VP
                due = now(ctx) + policy.vp_deadline
                note("escalated", f"VP decision due {rfc3339(due)}")
                nxt = this_stage(
                    ApprovalRequested.make_id(req.order_id, stage, tier),
                    "the manager did not decide in time; escalated to a VP",
                )
                yield activity(ctx, REQUEST_NEXT_STAGE, nxt)
                yield activity(ctx, RECORD_APPROVAL, view("pending"))
                deadline = ctx.create_timer(due)
                remind = reminder()
                continue
            if tier is Tier.MANAGER:
                outcome, reason = Outcome.REJECTED, "manager_timeout"
            else:
                outcome, reason = Outcome.EXPIRED, "approval_timeout"
            note("timed_out", reason)
            decided_by, decided_tier = "policy", None
            break

        data = waiting.get_result()
        waiting = ctx.wait_for_external_event(DECISION_EVENT)
        try:
            decision = DecisionSubmitted.model_validate(data)
        except ValidationError:
            note("malformed", "a decision event that is not a DecisionSubmitted")
            continue
        if decision.order_id != req.order_id:
            note("ignored", f"decision is for order {decision.order_id}", decision)
            continue
        if decision.decision_id in seen:
            note("duplicate", "already counted", decision)
            continue
        seen.add(decision.decision_id)
        problem = authority_problem(
            stage_tier=tier,
            approver_id=decision.approver_id,
            approver_role=decision.approver_role,
            customer_id=req.customer_id,
        )
        if problem:
            note("ignored", problem, decision)
            if not ctx.is_replaying:
                log.info(
                    "approval %s: ignored decision %s: %s",
                    req.order_id,
                    decision.decision_id,
                    problem,
                )
            yield activity(ctx, RECORD_APPROVAL, view("pending"))
            continue
        note("accepted", decision.reason, decision)
        outcome = Outcome.APPROVED if decision.approved else Outcome.REJECTED
        decided_by, decided_tier = decision.approver_id, tier
        reason = decision.reason or outcome.value
        break

    result = ApprovalOutcome(
        order_id=req.order_id,
        outcome=outcome,
        decided_by=decided_by,
        tier=decided_tier,
        reason=reason,
        decided_at=now(ctx),
    )
    ctx.set_custom_status(f"{outcome.value} by {decided_by}")
    yield activity(ctx, PUBLISH_OUTCOME, result.model_dump(mode="json"))
    yield activity(ctx, RECORD_APPROVAL, view(outcome.value, decided_by, reason))
    return ApprovalResult(
        order_id=req.order_id,
        outcome=outcome,
        decided_by=decided_by,
        reason=reason,
        stages=stage,
        log=entries,
    ).model_dump(mode="json")


def _parse_cancel(data: Any, order_id: str) -> ApprovalCancelled | None:
    """This order's cancellation, or None when the event is not one (it is then logged)."""
    try:
        stop = ApprovalCancelled.model_validate(data)
    except ValidationError:
        return None
    return stop if stop.order_id == order_id else None


def make_activities(gateway: Gateway) -> dict[str, Callable[..., Any]]:
    """The approval activities, bound to this app's gateway; registered by name."""

    def publish_approval_outcome(ctx: Any, data: dict[str, Any]) -> None:
        gateway.publisher.publish(APPROVAL_OUTCOMES, ApprovalOutcome.model_validate(data))

    def request_next_stage(ctx: Any, data: dict[str, Any]) -> None:
        request = ApprovalRequested.model_validate(data, context=TRUSTED)
        gateway.publisher.publish(APPROVAL_REQUESTS, request)
        gateway.metrics.escalations.labels(to_tier=request.tier.value).inc()

    def record_approval(ctx: Any, data: dict[str, Any]) -> None:
        view = ApprovalView.model_validate(data)
        save_view(gateway.state, view)
        if (waited := decision_time(view)) is not None:
            gateway.metrics.decision_seconds.labels(tier=view.tier.value).observe(waited)

    def remind_approvers(ctx: Any, data: dict[str, Any]) -> None:
        gateway.publisher.publish(
            APPROVAL_REMINDERS, ApprovalReminded.model_validate(data, context=TRUSTED)
        )

    return {
        PUBLISH_OUTCOME: publish_approval_outcome,
        REQUEST_NEXT_STAGE: request_next_stage,
        REMIND_APPROVERS: remind_approvers,
        RECORD_APPROVAL: record_approval,
    }
