"""An append-only audit log in the state store that cannot be quietly rewritten or cut.

Records live at "audit:<seq>" (seq from 1). Each carries `prev`, the MAC of the record before
it, and its own `mac`: HMAC-SHA256 over its content under a key (`kid`) read from the secret
store at startup, which the state store never sees. Whoever can write the store but not read
that secret can neither alter a record nor recompute the chain after one without `verify`
(plumbing.audit_reader) noticing.

Cutting the end off is caught by checkpoints, MACed with the same key and kept outside the
record key space: "audit-checkpoint:latest" ({count, head, at, kid, mac}) moves with every
append; every `checkpoint_every` records a numbered "audit-checkpoint:<count>" is claimed for
good before the latest may move past it. The process also remembers the newest record it wrote.

An append claims the next seq with a first-write, so two writers (threads, replicas) never
share one. The loser reads the record that won, follows it and claims the next seq, as often
as it takes (with jittered backoff, until a deadline): a busy log slows an append down, it
does not lose it. Once the record is claimed the append has succeeded; moving the checkpoints
after it is best effort, and the next append catches up.

Errors: AuditUnavailable (the record could not be written: the caller must not act, nor report
success).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pydantic import BaseModel, ValidationError, ValidationInfo, field_validator

from plumbing.audit_keys import Keyring
from plumbing.gateway import GatewayError, StateStore, Transient
from plumbing.refusals import RefusalLimiter, Suppressed
from plumbing.state import update

log = logging.getLogger(__name__)

LATEST_KEY = "audit-checkpoint:latest"
GENESIS = "0" * 64
# Longer values are cut (with a marker giving the original length) before the record is MACed.
CAPS = {
    "actor": 100,
    "role": 100,
    "action": 120,
    "target": 200,
    "reason": 500,
    "outcome": 500,
    "request_id": 64,
}
FOLLOW_CHUNK = 32
APPEND_DEADLINE_S = 30.0  # for lost races: each one means another record went in
TRANSIENT_PAUSES = (0.02, 0.05, 0.1, 0.2)


class AuditUnavailable(Exception):
    """The audit record could not be written."""


def cap(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    marker = f"...[{len(text)} chars]"
    return text[: limit - len(marker)] + marker


def record_key(seq: int) -> str:
    return f"audit:{seq}"


def checkpoint_key(count: int) -> str:
    return f"audit-checkpoint:{count}"


class AuditRecord(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str
    reason: str = ""
    outcome: str  # ok..., refused <status>: ..., failed: ..., suppressed <n>
    request_id: str = ""
    kid: str
    prev: str
    mac: str = ""

    @field_validator(*CAPS, mode="before")
    @classmethod
    def _capped(cls, value: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None
        return cap(value, CAPS[info.field_name]) if isinstance(value, str) else value

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"mac"})


class Checkpoint(BaseModel):
    """Records 1..count exist and record `count` has the MAC `head`."""

    count: int
    head: str
    at: datetime
    kid: str
    mac: str = ""

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"mac"})


def parse_record(raw: Any) -> AuditRecord | None:
    try:
        return AuditRecord.model_validate(raw)
    except ValidationError:
        return None


class AuditLog:
    """One app's audit log: append here; page through and verify with plumbing.audit_reader."""

    def __init__(
        self,
        state: StateStore,
        keys: Keyring,
        name: str,
        *,
        checkpoint_every: int = 100,
        refusals: RefusalLimiter | None = None,
        deadline_s: float = APPEND_DEADLINE_S,
    ) -> None:
        assert checkpoint_every >= 1
        self.state, self.keys, self.every = state, keys, checkpoint_every
        # The MACs cover the log's name (the app id): one app's records, even under the same
        # key, cannot stand in for another's.
        self.record_kind, self.checkpoint_kind = f"audit-record {name}", f"audit-checkpoint {name}"
        self.refusals = refusals
        self.deadline_s = deadline_s
        self._lock = threading.Lock()
        self._seen: tuple[int, str] | None = None  # the newest record this process wrote/verified

    # -- writing -------------------------------------------------------------------------------

    def append(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        target: str,
        outcome: str,
        reason: str = "",
        request_id: str = "",
    ) -> AuditRecord:
        """Write one record at the end of the chain and return it."""
        fields = {
            "actor": actor,
            "role": role,
            "action": action,
            "target": target,
            "outcome": outcome,
            "reason": reason,
            "request_id": request_id,
        }
        return self._append(fields, report_anomaly=True)

    def _append(self, fields: Mapping[str, str], report_anomaly: bool) -> AuditRecord:
        give_up = time.monotonic() + self.deadline_s
        lost = 0
        try:
            seq, prev, anomaly = self._tail_hint()
            while True:
                record = self._seal(seq + 1, prev, fields)
                if self._claim(record_key(record.seq), record.model_dump(mode="json"), give_up):
                    break
                lost += 1
                if time.monotonic() > give_up:
                    raise AuditUnavailable(
                        f"the audit log is too busy: lost {lost} races for a place in "
                        f"{self.deadline_s:.0f}s; try again"
                    )
                seq, prev = self._follow(record.seq, (seq, prev))
                time.sleep(random.uniform(0, min(0.05, 0.0005 * 2 ** min(lost, 7))))
        except GatewayError as exc:
            raise AuditUnavailable(f"the audit log could not be written: {exc}") from exc
        self.remember(record.seq, record.mac)
        try:
            self._checkpoint(record)
        except GatewayError as exc:  # the record is written; the next append moves them
            log.warning("audit record %d written, its checkpoint lags: %s", record.seq, exc)
        if anomaly and report_anomaly:
            # Someone deleted or forged the latest checkpoint, perhaps to hide a cut: this
            # append restored it, so say so in the log itself (once, not in a loop).
            log.warning("audit log: %s", anomaly)
            with contextlib.suppress(AuditUnavailable):
                self._append(
                    {
                        "actor": "audit log",
                        "role": "-",
                        "action": "audit_checkpoint_restored",
                        "target": LATEST_KEY,
                        "outcome": "anomaly",
                        "reason": f"{anomaly}; restored at record {record.seq}",
                    },
                    report_anomaly=False,
                )
        return record

    def append_refusal(
        self,
        caller: str,
        kind: str,
        *,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        role: str = "-",
        reason: str = "",
        request_id: str = "",
    ) -> AuditRecord | None:
        """Audit a refusal of a caller we could not identify, unless that caller is flooding
        us: then it is counted, and the count is written as one record later (None)."""
        if self.refusals is not None and not self.refusals.admit(caller, kind):
            return None
        self.flush_suppressed(caller)
        return self.append(
            actor=actor,
            role=role,
            action=action,
            target=target,
            outcome=outcome,
            reason=reason,
            request_id=request_id,
        )

    def flush_suppressed(self, caller: str | None = None, everything: bool = False) -> None:
        """Write the summaries of suppressed refusals: `caller`'s and those of callers that
        went quiet (every one when `everything`). A summary that cannot be written is kept."""
        if self.refusals is None:
            return
        for gone in self.refusals.take(caller, everything=everything):
            try:
                self.append(**summary_fields(gone))
            except AuditUnavailable as exc:
                self.refusals.give_back(gone)
                log.warning("could not write the suppressed refusals of %s: %s", gone.caller, exc)

    def _seal(self, seq: int, prev: str, fields: Mapping[str, str]) -> AuditRecord:
        record = AuditRecord(
            seq=seq, at=datetime.now(UTC), kid=self.keys.current, prev=prev, **fields
        )
        record.mac = self.keys.sign(self.record_kind, record.body())
        return record

    def _claim(self, key: str, value: Any, give_up: float) -> bool:
        """A first-write of `key`; a sidecar that is briefly unavailable is tried a few times
        (an unavailable log makes the caller wait a moment, not for long)."""
        for pause in TRANSIENT_PAUSES:
            try:
                return self.state.claim(key, value)
            except Transient:
                if time.monotonic() + pause > give_up:
                    raise
                time.sleep(pause)
        return self.state.claim(key, value)

    def _tail_hint(self) -> tuple[int, str, str]:
        """Where the chain ends, from the latest checkpoint if it is genuine, else searched;
        and what was wrong with the checkpoint when records exist without a genuine one."""
        latest = self.latest()
        if latest is not None and self.genuine(latest):
            return latest.count, latest.head, ""
        end = self.find_end(0)
        if not end:
            # A new log: its latest checkpoint exists before its first record, so a missing
            # one can only mean that someone deleted it.
            self.state.claim(LATEST_KEY, self.sign_checkpoint(0, GENESIS))
            return 0, GENESIS, ""
        latest = self.latest()  # again: a writer may have started the log since the first read
        if latest is not None and self.genuine(latest):
            return latest.count, latest.head, ""
        seq, prev = self._follow(end, (0, GENESIS))
        what = "missing" if latest is None else "not genuine"
        return seq, prev, f"the latest checkpoint was {what} with {seq} records in the log"

    def _follow(self, seq: int, fallback: tuple[int, str]) -> tuple[int, str]:
        """The last record of the contiguous run that starts at `seq` (seq, mac)."""
        found = fallback
        while True:
            keys = [record_key(s) for s in range(seq, seq + FOLLOW_CHUNK)]
            got = self.state.get_many(keys)
            for n, key in enumerate(keys):
                if key not in got:
                    return found
                mac = got[key].get("mac") if isinstance(got[key], dict) else None
                found = (seq + n, mac if isinstance(mac, str) else "")
            seq += FOLLOW_CHUNK

    def _checkpoint(self, record: AuditRecord) -> None:
        """Claim the numbered checkpoints up to `record`, then move the latest to it."""
        latest = self.latest()
        done = latest.count if latest is not None else 0
        if done >= record.seq:
            return  # another writer moved it past us
        for count in range((done // self.every + 1) * self.every, record.seq + 1, self.every):
            head = record.mac if count == record.seq else self.mac_of(count)
            if head is not None:
                self.state.claim(checkpoint_key(count), self.sign_checkpoint(count, head))
        signed = self.sign_checkpoint(record.seq, record.mac)
        update(self.state, LATEST_KEY, partial(_advance, signed))

    def sign_checkpoint(self, count: int, head: str) -> dict[str, Any]:
        cp = Checkpoint(count=count, head=head, at=datetime.now(UTC), kid=self.keys.current)
        cp.mac = self.keys.sign(self.checkpoint_kind, cp.body())
        return cp.model_dump(mode="json")

    def mac_of(self, seq: int) -> str | None:
        """The MAC of record `seq` as stored (None: no such well-formed record)."""
        raw, _ = self.state.get(record_key(seq))
        rec = parse_record(raw)
        return rec.mac if rec else None

    def remember(self, seq: int, mac: str) -> None:
        """Note the newest record this process has written or verified."""
        with self._lock:
            if self._seen is None or self._seen[0] < seq:
                self._seen = (seq, mac)

    def seen(self) -> tuple[int, str] | None:
        """The newest record this process wrote or verified, for verify's own anchor."""
        with self._lock:
            return self._seen

    # -- reading -------------------------------------------------------------------------------

    def latest(self) -> Checkpoint | None:
        raw, _ = self.state.get(LATEST_KEY)
        return parse_checkpoint(raw)

    def genuine(self, cp: Checkpoint) -> bool | None:
        """Whether the checkpoint's MAC is right (None: signed with a key unknown here)."""
        return self.keys.check(self.checkpoint_kind, cp.body(), cp.kid, cp.mac)

    def authentic(self, rec: AuditRecord) -> bool | None:
        """Whether the record's MAC is right (None: signed with a key unknown here)."""
        return self.keys.check(self.record_kind, rec.body(), rec.kid, rec.mac)

    def exists(self, seq: int) -> bool:
        return seq == 0 or self.state.get(record_key(seq))[0] is not None

    def find_end(self, hint: int) -> int:
        """The last seq of the log, searched from `hint` (a few reads, even when the hint is
        far off: exponential probing, then bisection)."""
        lo, hi = 0, None
        if hint > 0 and self.exists(hint):
            lo = hint
        elif hint > 0:
            hi, step = hint, 1
            while hint - step > 0 and not self.exists(hint - step):
                hi, step = hint - step, step * 2
            lo = max(hint - step, 0)
        step = 1
        while hi is None:
            if self.exists(lo + step):
                lo, step = lo + step, step * 2
            else:
                hi = lo + step
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.exists(mid) else (lo, mid)
        return lo

    def end(self) -> int:
        latest = self.latest()
        return self.find_end(latest.count if latest else 0)

    def records(self, first: int, last: int) -> dict[int, Any]:
        """The raw records first..last that exist, by seq (one round trip per 100)."""
        keys = [record_key(s) for s in range(first, last + 1)]
        got = self.state.get_many(keys)
        return {s: got[record_key(s)] for s in range(first, last + 1) if record_key(s) in got}


def parse_checkpoint(raw: Any) -> Checkpoint | None:
    try:
        return Checkpoint.model_validate(raw)
    except ValidationError:
        return None


def _advance(new: dict[str, Any], current: Any) -> dict[str, Any] | None:
    """Move the latest checkpoint to `new` unless it is there or further already."""
    now = parse_checkpoint(current)
    if now is not None and now.count >= new["count"]:
        return None
    return new


def summary_fields(gone: Suppressed) -> dict[str, str]:
    """The record that stands for refusals not written one by one."""
    kinds = ", ".join(f"{n} x {kind}" for kind, n in sorted(gone.kinds.items()))
    return {
        "actor": "unknown caller",
        "role": "-",
        "action": "refusals_suppressed",
        "target": gone.caller,
        "outcome": f"suppressed {gone.count}",
        "reason": f"{gone.count} refused requests ({kinds}) from {gone.caller} between "
        f"{gone.first:%Y-%m-%dT%H:%M:%SZ} and {gone.last:%Y-%m-%dT%H:%M:%SZ} were not "
        "recorded one by one",
    }
