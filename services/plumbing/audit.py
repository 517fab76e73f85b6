"""An append-only audit log in the state store, each record chained to the previous by hash.

Records live at "audit:<seq>" (seq from 1) and the head ("audit-head") says the last seq and
hash. An append claims the next seq with a first-write, so two writers never share a seq; a
head that lags (a writer died between its record and the head) is caught up by the next
append. There is no update or delete: the API only appends and reads. `verify` recomputes the
chain; any edited, removed or reordered record breaks it at that seq.

Errors: AuditUnavailable (the record could not be written; the caller must not report success).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pydantic import BaseModel

from plumbing.gateway import GatewayError, StateStore
from plumbing.state import update

HEAD_KEY = "audit-head"
GENESIS = "0" * 64


class AuditUnavailable(Exception):
    """The audit record could not be written."""


class AuditRecord(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str
    reason: str = ""
    outcome: str  # ok, refused: ..., failed: ...
    request_id: str = ""
    prev: str
    hash: str = ""

    def digest(self) -> str:
        body = self.model_dump(mode="json", exclude={"hash"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def record_key(seq: int) -> str:
    return f"audit:{seq}"


def append(
    state: StateStore,
    *,
    actor: str,
    role: str,
    action: str,
    target: str,
    outcome: str,
    reason: str = "",
    request_id: str = "",
    attempts: int = 50,
) -> AuditRecord:
    """Write one record at the end of the chain and return it."""
    try:
        head, _ = state.get(HEAD_KEY)
        seq, prev = (head["seq"], head["hash"]) if head else (0, GENESIS)
        for _ in range(attempts):
            record = AuditRecord(
                seq=seq + 1,
                at=datetime.now(UTC),
                actor=actor,
                role=role,
                action=action,
                target=target,
                reason=reason,
                outcome=outcome,
                request_id=request_id,
                prev=prev,
            )
            record.hash = record.digest()
            if state.claim(record_key(record.seq), record.model_dump(mode="json")):
                update(state, HEAD_KEY, partial(_advance, record))
                return record
            taken, _ = state.get(record_key(seq + 1))  # someone else wrote seq + 1: follow it
            if taken:
                seq, prev = taken["seq"], taken["hash"]
    except GatewayError as exc:
        raise AuditUnavailable(f"the audit log could not be written: {exc}") from exc
    raise AuditUnavailable("the audit log is too busy; try again")


def _advance(record: AuditRecord, head: dict[str, Any] | None) -> dict[str, Any] | None:
    """Move the head to `record` unless it is already there or further."""
    if head and head["seq"] >= record.seq:
        return None
    return {"seq": record.seq, "hash": record.hash}


def read(state: StateStore) -> list[AuditRecord]:
    """Every record, oldest first; a missing one shows up as a gap for `verify` to report."""
    head, _ = state.get(HEAD_KEY)
    end = head["seq"] if head else 0
    keys = [record_key(seq) for seq in range(1, end + 1)]
    found = state.get_many(keys)
    records = [AuditRecord.model_validate(found[k]) for k in keys if k in found]
    seq = end + 1
    while (data := state.get(record_key(seq))[0]) is not None:  # a head that lags
        records.append(AuditRecord.model_validate(data))
        seq += 1
    return records


def verify(records: Iterable[AuditRecord]) -> tuple[bool, str]:
    """(True, summary) when the chain is intact from seq 1; else (False, where it breaks)."""
    prev, expected, count = GENESIS, 1, 0
    for rec in records:
        if rec.seq != expected:
            return False, f"record {expected} is missing (found {rec.seq} instead)"
        if rec.prev != prev:
            return False, f"record {rec.seq} does not follow record {rec.seq - 1}"
        if rec.digest() != rec.hash:
            return False, f"record {rec.seq} was altered (its hash does not match its content)"
        prev, expected, count = rec.hash, expected + 1, count + 1
    return True, f"{count} records, chain intact"


def matches(rec: AuditRecord, filters: dict[str, Any]) -> bool:
    """Filters: actor, action, target (exact), outcome (prefix), since (datetime)."""
    for name in ("actor", "action", "target"):
        if filters.get(name) and getattr(rec, name) != filters[name]:
            return False
    if filters.get("outcome") and not rec.outcome.startswith(filters["outcome"]):
        return False
    since = filters.get("since")
    return not (since and rec.at < since)
