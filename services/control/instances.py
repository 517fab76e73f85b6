"""An index of this app's workflow instances, so listing never scans Dapr's actor state.

Dapr's list call returns ids only (it scans the state store), and each status then costs a
call. The index keeps one small document per instance ("wf:<id>": name, status, created,
updated, deadline) and the ids in 16 shards ("wf-ids:<n>") so that concurrent writers rarely
touch the same document. It is maintained by whoever changes an instance: the subscriptions and
the management API when they schedule, the workflows' last activity when they end, the
management API when it suspends, resumes, terminates or purges. `reconcile` rebuilds it from
Dapr on demand (an instance that failed, or one started by other means).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from plumbing.gateway import Gateway, StateStore, Workflows, schedule_once
from plumbing.state import update, update_many
from plumbing.tracing import current_trace_id
from plumbing.workflow import now

SHARDS = 16
TERMINAL = frozenset({"COMPLETED", "FAILED", "TERMINATED"})
STATUSES = frozenset(
    {"RUNNING", "COMPLETED", "FAILED", "TERMINATED", "PENDING", "SUSPENDED", "STALLED"}
)


class Entry(BaseModel):
    instance_id: str
    name: str
    status: str
    created_at: datetime
    updated_at: datetime
    deadline: datetime | None = None
    # The trace the instance was started in (plumbing.tracing), when tracing is on.
    trace_id: str | None = None


def _shard(instance_id: str) -> str:
    return f"wf-ids:{zlib.crc32(instance_id.encode()) % SHARDS}"


def _key(instance_id: str) -> str:
    return f"wf:{instance_id}"


def track(
    state: StateStore,
    instance_id: str,
    name: str,
    status: str,
    at: datetime,
    deadline: datetime | None = None,
    trace_id: str | None = None,
    first: bool = False,
) -> None:
    """Record (or update) an instance's status; the first record fixes its creation time."""
    if first:
        new = Entry(
            instance_id=instance_id,
            name=name,
            status=status,
            created_at=at,
            updated_at=at,
            deadline=deadline,
            trace_id=trace_id,
        )
        if state.claim(_key(instance_id), new.model_dump(mode="json")):
            _add_id(state, instance_id)
            return

    def change(current: dict[str, Any] | None) -> dict[str, Any]:
        return Entry(
            instance_id=instance_id,
            name=name or (current or {}).get("name", ""),
            status=status,
            created_at=(current or {}).get("created_at", at),
            updated_at=at,
            deadline=deadline or (current or {}).get("deadline"),
            trace_id=trace_id or (current or {}).get("trace_id"),
        ).model_dump(mode="json")

    # Under optimistic concurrency: a document first written with a claim takes writes with
    # its etag only (Dapr's Redis store refuses a plain write over it).
    update(state, _key(instance_id), change)
    _add_id(state, instance_id)


def _add_id(state: StateStore, instance_id: str) -> None:
    def add(ids: list[str] | None) -> list[str] | None:
        return None if ids and instance_id in ids else [*(ids or []), instance_id]

    update(state, _shard(instance_id), add)


def start(
    gateway: Gateway, name: str, instance_id: str, input: Any, deadline: datetime | None = None
) -> None:
    """Schedule a workflow (an instance already running counts as done) and index it."""
    schedule_once(gateway, name, instance_id, input)
    track(
        gateway.state,
        instance_id,
        name,
        "RUNNING",
        datetime.now(UTC),
        deadline,
        current_trace_id(),
        first=True,  # usually: one write instead of a read and a write
    )


def start_once(
    gateway: Gateway,
    seen_key: str,
    name: str,
    instance_id: str,
    input: Any,
    deadline: datetime | None = None,
) -> bool:
    """Start a workflow once per business id, however often asked; False for a duplicate.

    Dapr lets a finished instance id be reused, so a claim under `seen_key` (an atomic first
    write) is what makes a late redelivery harmless. A claim whose starter died before it
    scheduled is finished by the next caller.
    """
    workflows = gateway.workflows
    assert workflows is not None, "this app hosts no workflows"
    if not gateway.state.claim(seen_key, {"status": "claimed"}):
        seen, _ = gateway.state.get(seen_key)
        if (seen or {}).get("status") == "scheduled" or workflows.state(instance_id):
            return False
    start(gateway, name, instance_id, input, deadline)
    update(gateway.state, seen_key, lambda s: {**(s or {}), "status": "scheduled"})
    return True


def set_status(state: StateStore, instance_id: str, status: str) -> None:
    """Change the status of an indexed instance (no-op for one the index does not know)."""
    current, _ = state.get(_key(instance_id))
    if current:
        track(state, instance_id, current["name"], status, datetime.now(UTC))


def forget_many(state: StateStore, instance_ids: list[str]) -> None:
    """Drop several instances from the index: their documents and their ids in the shards, in
    one transaction per 80 instances."""
    for start in range(0, len(instance_ids), 80):
        some = instance_ids[start : start + 80]
        by_shard: dict[str, set[str]] = {}
        for iid in some:
            by_shard.setdefault(_shard(iid), set()).add(iid)

        def drop(shard: str, ids: list[str], gone: dict[str, set[str]] = by_shard) -> Any:
            if not gone[shard] & set(ids):
                return None
            return [i for i in ids if i not in gone[shard]]

        update_many(state, sorted(by_shard), drop, deletes=[_key(iid) for iid in some])


def forget(state: StateStore, instance_id: str) -> None:
    state.delete(_key(instance_id))
    update(
        state,
        _shard(instance_id),
        lambda ids: [i for i in ids if i != instance_id] if ids and instance_id in ids else None,
    )


def entry(state: StateStore, instance_id: str) -> Entry | None:
    """One indexed instance, or None when the index does not know it."""
    doc, _ = state.get(_key(instance_id))
    return Entry.model_validate(doc) if doc else None


def entries(state: StateStore) -> list[Entry]:
    """Every indexed instance: 16 shard reads and one bulk read per 100 instances."""
    shards = state.get_many([f"wf-ids:{n}" for n in range(SHARDS)])
    ids = [i for n in range(SHARDS) for i in shards.get(f"wf-ids:{n}", [])]
    docs = state.get_many([_key(i) for i in ids])
    return [Entry.model_validate(docs[_key(i)]) for i in ids if _key(i) in docs]


@dataclass(frozen=True)
class Filter:
    status: frozenset[str] = frozenset()
    name: str | None = None
    created_before: datetime | None = None
    created_after: datetime | None = None
    updated_before: datetime | None = None
    updated_after: datetime | None = None

    def __call__(self, e: Entry) -> bool:
        return (
            (not self.status or e.status in self.status)
            and (self.name is None or e.name == self.name)
            and (self.created_before is None or e.created_at < self.created_before)
            and (self.created_after is None or e.created_at > self.created_after)
            and (self.updated_before is None or e.updated_at < self.updated_before)
            and (self.updated_after is None or e.updated_at > self.updated_after)
        )


def reconcile(state: StateStore, workflows: Workflows) -> dict[str, int]:
    """Make the index agree with Dapr: add what it lacks, fix statuses, drop purged ones."""
    known = {e.instance_id: e for e in entries(state)}
    ids = set(workflows.list_ids()) | set(known)
    counts = {"checked": len(ids), "added": 0, "updated": 0, "removed": 0}
    for iid in sorted(ids):
        real = workflows.state(iid)
        if real is None:
            if iid in known:
                forget(state, iid)
                counts["removed"] += 1
            continue
        entry = known.get(iid)
        if entry is None or entry.status != real.status:
            counts["added" if entry is None else "updated"] += 1
            now = datetime.now(UTC)
            fixed = Entry(
                instance_id=iid,
                name=real.name,
                status=real.status,
                created_at=_aware(real.created_at) or now,
                updated_at=_aware(real.updated_at) or now,
                deadline=entry.deadline if entry else None,
            ).model_dump(mode="json")
            update(state, _key(iid), functools.partial(_replaced_by, fixed))
            _add_id(state, iid)
    return counts


def _replaced_by(new: dict[str, Any], _: Any) -> dict[str, Any]:
    return new


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# The activity every workflow calls as its last step, to keep the index current.
TRACK_INSTANCE = "track_instance"


def tracked(ctx: Any, name: str, status: str) -> dict[str, Any]:
    """Input of the track_instance activity: this instance reached `status` now."""
    return {
        "instance_id": ctx.instance_id,
        "name": name,
        "status": status,
        "at": now(ctx).isoformat(),
    }


def track_activity(gateway: Gateway) -> Callable[..., None]:
    """The track_instance activity, bound to this app's state store."""

    def track_instance(ctx: Any, data: dict[str, Any]) -> None:
        track(
            gateway.state,
            data["instance_id"],
            data["name"],
            data["status"],
            datetime.fromisoformat(data["at"]),
        )

    return track_instance
