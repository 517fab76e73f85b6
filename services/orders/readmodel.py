"""The order record: what an order is, in business terms, kept in the orders app's state store.

One document per order ("order:<order_id>"). It is written when the order is accepted (before
its workflow is scheduled), by the order workflow's activities at every step and when its
approval moves to another stage, and, for a workflow that ended without saying how (terminated
or failed), before that workflow is purged. So it outlives the workflow: purging removes the
history, never the outcome.

Writes only move an order forward (`advance`): a retried activity or a late message cannot take
it back, and an order that ended stays ended.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from contracts.messages import Tier
from contracts.money import Valuation
from contracts.timestamps import UtcDatetime
from control.instances import TERMINAL
from control.views import describe
from plumbing.gateway import InstanceState, StateStore
from plumbing.state import update


class RecordStatus(StrEnum):
    """Where an order is. `accepted`: taken in, its workflow not started yet."""

    ACCEPTED = "accepted"
    RECEIVED = "received"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    COMPLETED = "completed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TERMINATED = "terminated"


_RANK = {
    RecordStatus.ACCEPTED: 0,
    RecordStatus.RECEIVED: 1,
    RecordStatus.AWAITING_APPROVAL: 2,
    RecordStatus.APPROVED: 3,
}
ENDED = frozenset(RecordStatus) - set(_RANK)


def rank(status: RecordStatus) -> int:
    """How far along the lifecycle `status` is; every way of ending ranks last."""
    return _RANK.get(status, len(_RANK))


class ApprovalStage(BaseModel):
    """The approval the order waits for: its stage, the approvers' level and the deadline."""

    stage: int
    tier: Tier
    due_at: UtcDatetime


class OrderRecord(BaseModel):
    order_id: str
    status: RecordStatus
    detail: str = ""
    customer_id: str | None = None
    amount: str | None = None
    currency: str | None = None
    amount_text: str | None = None
    valuation: Valuation | None = None
    approval: ApprovalStage | None = None
    # The order workflow's result once it ended (approved, rejected or expired).
    result: dict[str, Any] | None = None
    # Who stopped the workflow and why, when an operator terminated it.
    terminated: dict[str, Any] | None = None
    failure: str | None = None
    placed_at: UtcDatetime | None = None
    accepted_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None


def record_key(order_id: str) -> str:
    return f"order:{order_id}"


def advance(current: OrderRecord | None, change: OrderRecord) -> OrderRecord | None:
    """The record once `change` is applied; None when it is old news and changes nothing.

    An order moves forward only; at the same step, only a later approval stage is news."""
    if current is None:
        return change
    if current.status in ENDED or rank(change.status) < rank(current.status):
        return None
    if rank(change.status) == rank(current.status):
        later = (
            change.status is RecordStatus.AWAITING_APPROVAL
            and change.approval is not None
            and (current.approval is None or change.approval.stage > current.approval.stage)
        )
        if not later:
            return None
    given = {k: getattr(change, k) for k in change.model_fields_set}
    return current.model_copy(update={k: v for k, v in given.items() if v is not None})


def load(state: StateStore, order_id: str) -> OrderRecord | None:
    data, _ = state.get(record_key(order_id))
    return OrderRecord.model_validate(data) if data else None


def ended(state: StateStore, order_ids: list[str]) -> set[str]:
    """The orders whose record says how they ended (which no later write changes): one bulk read."""
    found = state.get_many([record_key(o) for o in order_ids])
    return {o for o in order_ids if (r := found.get(record_key(o))) and r.get("status") in ENDED}


def save(state: StateStore, change: OrderRecord) -> None:
    """Apply `change` to the stored record under optimistic concurrency (created if absent)."""
    save_all(state, [change])


def create(state: StateStore, record: OrderRecord) -> None:
    """Write the record of an order first seen now: one write, or `save` if one exists."""
    if not state.claim(record_key(record.order_id), record.model_dump(mode="json")):
        save(state, record)


def save_all(state: StateStore, changes: list[OrderRecord]) -> OrderRecord | None:
    """Apply several changes of one order, in order, in one read-modify-write; the record as
    stored afterwards (None if there is none)."""

    def apply(data: dict[str, Any] | None) -> dict[str, Any] | None:
        current = OrderRecord.model_validate(data) if data else None
        moved = False
        for change in changes:
            if (new := advance(current, change)) is not None:
                current, moved = new, True
        return current.model_dump(mode="json") if moved and current is not None else None

    stored = update(state, record_key(changes[0].order_id), apply)
    return OrderRecord.model_validate(stored) if stored else None


def _output(raw: str | None) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw


def ending(order_id: str, wf: InstanceState) -> OrderRecord | None:
    """How a finished workflow (read with payloads) ended, as a record change; None if running.

    The workflow's last activity records a completed order itself; this covers the ends it
    cannot record (terminated, failed) and orders from before there were records."""
    if wf.status not in TERMINAL:
        return None
    output = _output(wf.output)
    at = wf.updated_at or datetime.now(UTC)
    if wf.status == "TERMINATED":
        stop = output if isinstance(output, dict) else {"output": output}
        who = f" by {stop['by']}" if stop.get("by") else ""
        why = f": {stop['reason']}" if stop.get("reason") else ""
        return OrderRecord(
            order_id=order_id,
            status=RecordStatus.TERMINATED,
            detail=f"workflow terminated{who}{why}",
            terminated=stop,
            updated_at=at,
        )
    if wf.status == "FAILED":
        return OrderRecord(
            order_id=order_id,
            status=RecordStatus.FAILED,
            detail=f"workflow failed: {wf.failure or 'no reason given'}",
            failure=wf.failure,
            updated_at=at,
        )
    result = output if isinstance(output, dict) else None
    said = str((result or {}).get("status", ""))
    return OrderRecord(
        order_id=order_id,
        status=RecordStatus(said) if said in set(RecordStatus) else RecordStatus.COMPLETED,
        detail=str((result or {}).get("reason", "")),
        result=result,
        updated_at=at,
    )


def _from_workflow(order_id: str, wf: InstanceState) -> OrderRecord:
    """An order with no record yet (accepted by a release before records): its workflow."""
    if wf.status == "PENDING":
        status = RecordStatus.ACCEPTED
    elif (wf.custom_status or "").strip('"').startswith("awaiting"):
        status = RecordStatus.AWAITING_APPROVAL
    else:
        status = RecordStatus.RECEIVED
    return OrderRecord(order_id=order_id, status=status, updated_at=wf.updated_at)


def show(
    order_id: str, instance_id: str, record: OrderRecord | None, wf: InstanceState | None
) -> dict[str, Any]:
    """The order as GET /orders/{id} shows it: the record, brought up to date with the
    workflow while it exists (read with payloads), and the workflow's own status."""
    current = record
    if wf is not None:
        current = current or _from_workflow(order_id, wf)
        end = ending(order_id, wf)
        current = (advance(current, end) if end else None) or current
    assert current is not None, "show needs a record or a workflow"
    return current.model_dump(mode="json") | {
        "instance_id": instance_id,
        "workflow_status": wf.status if wf else None,
        "workflow": describe(wf, payloads=False) if wf else None,
    }
