"""approvals: subscriptions (approval-requests, decisions), the decision API and the inbox."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from dapr.ext.fastapi import DaprApp
from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, Field

from approvals.domain import ApprovalView, UnknownApproval, check_can_decide, why_not_decide
from approvals.readmodel import INDEX_KEY, list_index, load_view, save_view, view_key
from approvals.workflows import (
    APPROVAL_WORKFLOW,
    CANCEL_EVENT,
    DECISION_EVENT,
    INSTANCE_PREFIX,
    ApprovalInput,
    instance_id,
)
from contracts.messages import (
    TRUSTED,
    ApprovalCancelled,
    ApprovalRequested,
    BusinessId,
    DecisionSubmitted,
    Tier,
)
from contracts.text import PlainText
from contracts.topics import APPROVAL_CANCELLATIONS, APPROVAL_REQUESTS, DECISIONS
from control import instances
from control.auditing import audited
from control.management import MAX_WAIT_S, WorkflowRules, mount_management
from plumbing.auth import Approver, Principal, Reader, Role
from plumbing.gateway import Gateway, InstanceState
from plumbing.metrics import ReadModelGauges, waiting_by_tier
from plumbing.settings import ServiceSettings
from plumbing.subscriptions import Answer, keys_of, subscribe
from plumbing.web import GatewayDep, Waiting

log = logging.getLogger(__name__)


def accept_request(gateway: Gateway, settings: ServiceSettings, req: ApprovalRequested) -> Answer:
    """Schedule one approval_workflow per order; later stages are announced by that workflow."""
    if req.stage > 1:
        return Answer.success("later stage of an existing approval")
    wf_input = ApprovalInput(request=req.model_dump(mode="json"), policy=settings.policy.snapshot())
    escalation = settings.policy.vp_deadline if req.tier is Tier.MANAGER else timedelta(0)
    iid = instance_id(req.order_id)
    started = instances.start_once(
        gateway,
        f"approval-seen:{req.order_id}",
        APPROVAL_WORKFLOW,
        iid,
        wf_input.model_dump(mode="json"),
        req.due_at + escalation,
    )
    # Read after starting (a duplicate too: its first delivery may have died in between), so
    # that a cancellation marked while it started is seen here or sees the instance there.
    early, _ = gateway.state.get(cancel_marker(req.order_id))
    if early is not None:
        _raise_cancel(gateway, iid, ApprovalCancelled.model_validate(early))
        return Answer.success("started and closed: its order was cancelled before")
    return Answer.success() if started else Answer.success("duplicate request")


def _held(iid: str, made_at: datetime, hold_for_s: float, what: str) -> Answer:
    """A message for an approval that does not exist yet: RETRY (topics reorder) until
    `hold_for_s` after it was made, then DROP to the dead-letter topic."""
    if (datetime.now(UTC) - made_at).total_seconds() > hold_for_s:
        return Answer.drop(f"no approval {iid} appeared within {hold_for_s:.0f}s")
    return Answer.retry(f"approval {iid} does not exist yet; holding the {what}")


def deliver_decision(
    gateway: Gateway, settings: ServiceSettings, decision: DecisionSubmitted, hold_for_s: float
) -> Answer:
    """Raise a decision into its approval workflow, once per decision_id.

    Topics reorder: a decision may arrive before its approval exists. It is then held
    (RETRY, the sidecar redelivers) until `hold_for_s` after it was made, then dead-lettered.
    """
    assert gateway.workflows is not None
    iid = instance_id(decision.order_id)
    state = gateway.workflows.state(iid)
    if state is None:
        return _held(iid, decision.decided_at, hold_for_s, "decision")
    if state.status in instances.TERMINAL:
        return Answer.success(f"{iid} already {state.status.lower()}; decision has no effect")
    key = f"decision-seen:{decision.decision_id}"
    if not gateway.state.claim(key, {"order_id": decision.order_id}):
        return Answer.success("duplicate decision")
    try:
        gateway.workflows.raise_event(iid, DECISION_EVENT, decision.model_dump(mode="json"))
    except Exception:
        gateway.state.delete(key)  # let the redelivery try again
        raise
    return Answer.success()


def cancel_marker(order_id: str) -> str:
    return f"approval-cancelled:{order_id}"


def _raise_cancel(gateway: Gateway, iid: str, stop: ApprovalCancelled) -> None:
    """Raise the cancellation into an approval that has not ended (twice is harmless: the
    approval ends at the first, and the second finds nothing waiting)."""
    assert gateway.workflows is not None
    state = gateway.workflows.state(iid)
    if state is not None and state.status not in instances.TERMINAL:
        gateway.workflows.raise_event(iid, CANCEL_EVENT, stop.model_dump(mode="json"))


def close_approval(gateway: Gateway, stop: ApprovalCancelled) -> Answer:
    """Raise the order's cancellation into its approval workflow, which ends it `cancelled`.

    The request and the cancellation travel on different topics, and the request may come
    much later (after an outage): a cancellation that arrives first is kept as a marker under
    `cancel_marker(order_id)`, which accept_request honours by starting the approval and
    closing it at once, so the approval's record and the inbox read `cancelled`. The marker is
    written before the instance is looked at again: whichever of the two comes second sees
    the other."""
    wf = gateway.workflows
    assert wf is not None
    iid = instance_id(stop.order_id)
    state = wf.state(iid)
    if state is None:
        view = load_view(gateway.state, stop.order_id)
        if view is not None:  # its workflow was purged: it ended long ago
            return Answer.success(f"approval of {stop.order_id} already {view.status}")
        gateway.state.claim(cancel_marker(stop.order_id), stop.model_dump(mode="json"))
        if wf.state(iid) is None:
            return Answer.success(f"approval {iid} does not exist yet; it will start closed")
        _raise_cancel(gateway, iid, stop)
        return Answer.success()
    if state.status in instances.TERMINAL:
        return Answer.success(f"{iid} already {state.status.lower()}; nothing to close")
    wf.raise_event(iid, CANCEL_EVENT, stop.model_dump(mode="json"))
    return Answer.success()


class DecisionBody(BaseModel):
    """A decision as an approver posts it; who decides comes from the bearer token."""

    approved: bool
    reason: Annotated[PlainText, Field(max_length=1000)] = ""


STATUS_FILTER = "^(pending|approved|rejected|expired|cancelled|terminated|failed)$"


def keep_ending(gateway: Gateway, state: InstanceState) -> None:
    """An approval whose workflow was terminated (or failed) leaves the inbox: nobody can
    decide it any more, so it must not read as pending."""
    if state.status not in ("TERMINATED", "FAILED"):
        return
    view = load_view(gateway.state, state.instance_id.removeprefix(INSTANCE_PREFIX))
    if view is None or view.status != "pending":
        return
    by, reason = None, ""
    if state.output:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            ended = json.loads(state.output)
            by, reason = ended.get("by"), str(ended.get("reason", ""))
    change = {"status": state.status.lower(), "decided_by": by, "reason": reason}
    save_view(gateway.state, view.model_copy(update=change))


def ending_kept(gateway: Gateway, instance_ids: list[str]) -> set[str]:
    """The approval workflows among these with no pending approval in the inbox: purging them
    leaves nothing pending (`keep_ending` would change nothing)."""
    keys = {
        view_key(i.removeprefix(INSTANCE_PREFIX)): i
        for i in instance_ids
        if i.startswith(INSTANCE_PREFIX)
    }
    views = gateway.state.get_many(list(keys))
    return {i for k, i in keys.items() if k not in views or views[k].get("status") != "pending"}


def register(app: FastAPI, dapr_app: DaprApp, settings: ServiceSettings) -> None:
    """Mount the subscriptions and routes on the app."""

    def gw() -> Gateway:
        return app.state.gateway  # type: ignore[no-any-return]

    subscribe(
        dapr_app,
        gw,
        settings,
        topic=APPROVAL_REQUESTS,
        model=ApprovalRequested,
        handler=lambda m: accept_request(gw(), settings, m),
        # Only orders says what an order needs (stage 1); later stages are our own.
        signed_by=keys_of(app, "orders", "approvals"),
        limits=TRUSTED,  # checked by orders under the policy the order started with
    )
    subscribe(
        dapr_app,
        gw,
        settings,
        topic=DECISIONS,
        model=DecisionSubmitted,
        handler=lambda m: deliver_decision(gw(), settings, m, settings.decision_hold_s),
        signed_by=keys_of(app, "approvals"),  # only the approvals API decides
    )
    subscribe(
        dapr_app,
        gw,
        settings,
        topic=APPROVAL_CANCELLATIONS,
        model=ApprovalCancelled,
        handler=lambda m: close_approval(gw(), m),
        signed_by=keys_of(app, "orders"),  # only orders cancels an order
    )
    app.include_router(router)
    app.state.metrics.registry.register(ReadModelGauges(lambda: gw().state.get(INDEX_KEY)[0]))
    app.state.overview_parts["approvals"] = lambda gateway: waiting_by_tier(
        gateway.state.get(INDEX_KEY)[0] or {}, datetime.now(UTC)
    )
    rules = WorkflowRules(
        started_by="an ApprovalRequested on the approval-requests topic",
        keep=keep_ending,
        kept=ending_kept,
    )
    mount_management(app, {APPROVAL_WORKFLOW: rules})


router = APIRouter(tags=["approvals"])


@router.post("/approvals/{order_id}/decisions", status_code=202)
def post_decision(
    order_id: BusinessId,
    body: DecisionBody,
    gateway: GatewayDep,
    request: Request,
    approver: Approver,
) -> dict[str, str]:
    """Check what can be checked now, then publish the decision to the `decisions` topic."""
    assert approver.level is not None
    view = check_can_decide(
        load_view(gateway.state, order_id), order_id, approver.id, approver.level
    )
    return submit_decision(gateway, request, view, approver, body)


def submit_decision(
    gateway: Gateway, request: Request, view: ApprovalView, approver: Principal, body: DecisionBody
) -> dict[str, str]:
    """Publish a decision that passed check_can_decide, audited first (the API and the
    one-click links both decide through here)."""
    return publish_decision(gateway, request, new_decision(view, approver, body), view.amount_text)


def new_decision(view: ApprovalView, approver: Principal, body: DecisionBody) -> DecisionSubmitted:
    """The decision an approver's body makes, with a fresh decision id."""
    assert approver.level is not None
    return DecisionSubmitted(
        decision_id=f"d-{uuid.uuid4().hex}",
        order_id=view.order_id,
        approved=body.approved,
        approver_id=approver.id,
        approver_role=approver.level,
        reason=body.reason,
        decided_at=datetime.now(UTC),
    )


def publish_decision(
    gateway: Gateway, request: Request, decision: DecisionSubmitted, amount_text: str
) -> dict[str, str]:
    """Publish a decision, audited first. Publishing one decision id again is harmless: the
    approval takes each decision id once (`decision-seen`, deliver_decision)."""
    verb = "approve" if decision.approved else "reject"
    outcome = f"ok: {verb} {amount_text} as {decision.decision_id}"
    with audited(request, target=decision.order_id, reason=decision.reason, outcome=outcome):
        gateway.publisher.publish(DECISIONS, decision)
    return {
        "decision_id": decision.decision_id,
        "order_id": decision.order_id,
        "status": "submitted",
    }


@router.get("/approvals")
def inbox(
    gateway: GatewayDep,
    reader: Reader,
    status: Annotated[str | None, Query(pattern=STATUS_FILTER)] = None,
    tier: Tier | None = None,
) -> list[dict[str, Any]]:
    """Approvals by status and tier, soonest due first; each says whether the caller may
    decide it (`can_decide`) and, when not, why (`why_not`)."""
    level = reader.level if Role.APPROVER in reader.roles else None
    rows = list_index(gateway.state, status, tier.value if tier else None)
    for row in rows:
        why_not = why_not_decide(
            row["status"], Tier(row["tier"]), row["customer_id"], reader.id, level
        )
        row |= {"can_decide": why_not is None, "why_not": why_not}
    return rows


POLL_S = 0.25


@router.get("/approvals/{order_id}")
def get_approval(
    order_id: BusinessId,
    gateway: GatewayDep,
    _: Reader,
    waiting: Waiting,
    wait: Annotated[
        float,
        Query(ge=0, le=MAX_WAIT_S, description="seconds to wait for it to exist; at most 60"),
    ] = 0,
) -> ApprovalView:
    """One approval: stage, due time, decision log.

    An approval exists a moment after its order asked for it (it arrives on a topic): `wait`
    polls until it does instead of answering 404 at once."""
    deadline = time.monotonic() + wait
    with waiting.slot(wait):
        while (view := load_view(gateway.state, order_id)) is None:
            if time.monotonic() >= deadline:
                after = f" after waiting {wait:g}s" if wait else ""
                raise UnknownApproval(f"no approval for order {order_id!r}{after}")
            time.sleep(POLL_S)
    return view
