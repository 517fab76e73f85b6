"""Reading the audit log: a page at a time, and verifying it without reading all of it.

`verify` checks, by default, what changed since the last numbered checkpoint: the latest
checkpoint is genuine and its record is there unchanged (so the log was not cut or rewritten
at the end), the numbered checkpoint below it is genuine and matches its record, and every
record after that one has a valid MAC and follows the one before. With `full` it checks every
record and every numbered checkpoint. Two anchors outside the store are checked too: the
newest record this process wrote or verified, and one the caller hands in (e.g. the CLI's
`--anchor` file), so a log rolled back together with its checkpoints is caught by whoever saw
it before.

What it cannot prove: someone who holds the key can write anything; someone who can write the
store can delete the end of the log together with its checkpoints, or the whole log, and only
an anchor kept elsewhere (this process, the caller's, a second store) notices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from plumbing.audit import (
    GENESIS,
    LATEST_KEY,
    AuditLog,
    AuditRecord,
    Checkpoint,
    checkpoint_key,
    parse_checkpoint,
    parse_record,
)

MAX_PROBLEMS = 50
CHUNK = 100
BASE_FALLBACKS = 10


@dataclass(frozen=True)
class Page:
    """Records newest last; `older` (pass as `before`) and `newer` (pass as `after`) continue
    the scan, None when there is nothing more that way; `last_seq` is the log's end."""

    records: list[AuditRecord]
    last_seq: int
    older: int | None
    newer: int | None


def page(
    log: AuditLog,
    *,
    limit: int,
    before: int | None = None,
    after: int | None = None,
    match: Callable[[AuditRecord], bool] = lambda _: True,
    scan: int = 2000,
) -> Page:
    """Up to `limit` matching records: the newest ones before `before` (default: the end), or
    the oldest ones after `after`; reading at most `scan` records either way."""
    last = log.end()
    if after is not None:
        seqs = range(after + 1, last + 1)
    else:
        seqs = range(last if before is None else min(before - 1, last), 0, -1)
    seqs = seqs[:scan]
    found: list[AuditRecord] = []
    examined: list[int] = []
    for start in range(0, len(seqs), CHUNK):
        chunk = seqs[start : start + CHUNK]
        raw = log.records(min(chunk), max(chunk))
        for seq in chunk:
            examined.append(seq)
            rec = parse_record(raw.get(seq))
            if rec is not None and rec.seq == seq and match(rec):
                found.append(rec)
                if len(found) == limit:
                    break
        if len(found) == limit:
            break
    found.sort(key=lambda r: r.seq)
    lo, hi = (min(examined), max(examined)) if examined else (0, last)
    return Page(found, last, lo if lo > 1 else None, hi if hi < last else None)


@dataclass
class Verdict:
    intact: bool = True
    summary: str = ""
    problems: list[str] = field(default_factory=list)
    records: int = 0  # the log's last seq
    checked_from: int = 1  # records checked_from..records had their MAC and link checked
    full: bool = False
    anchor: dict[str, Any] | None = None  # {count, head} of the end, to keep for next time

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)


def verify(log: AuditLog, *, full: bool = False, anchor: tuple[int, str] | None = None) -> Verdict:
    """Check the chain since the last checkpoint (every record with `full`) and the anchors."""
    v = Verdict(full=full)
    seen = log.seen()  # read before the store: what this process wrote is there by now
    raw, _ = log.state.get(LATEST_KEY)
    latest = _genuine_latest(log, raw, v)
    end = log.find_end(latest.count if latest else 0)
    v.records = end
    if raw is None and end > 0:
        v.problem(
            f"the latest checkpoint ({LATEST_KEY}) is missing, yet the log holds {end} records: "
            "it was deleted, perhaps to hide a cut"
        )
    signed = latest.count if latest else 0
    if latest is not None:
        who = f"the latest checkpoint (of {latest.at:%Y-%m-%d %H:%M:%S})"
        _check_anchor(log, v, end, latest.count, latest.head, who)
    base, head = (0, GENESIS) if full else _base(log, v, min(signed, end))
    numbered = _numbered(log, signed) if full else {}
    _check_chain(log, v, base, head, end, numbered)
    for label, point in (("this app", seen), ("your anchor", anchor)):
        if point is not None:
            _check_anchor(log, v, end, point[0], point[1], label)
    v.checked_from = base + 1
    v.intact = not v.problems
    if v.intact:
        mac = log.mac_of(end) if end else GENESIS
        v.anchor = {"count": end, "head": mac}
        if end and mac:
            log.remember(end, mac)
        v.summary = f"{end} records, chain intact"
        if base:
            v.summary += (
                f" since the checkpoint at record {base} (records {base + 1}..{end} checked; "
                "full=true checks every record)"
            )
    else:
        more = len(v.problems) - 1
        v.summary = v.problems[0] + (f" (and {more} more)" if more else "")
    return v


def _genuine_latest(log: AuditLog, raw: Any, v: Verdict) -> Checkpoint | None:
    if raw is None:
        return None
    latest = parse_checkpoint(raw)
    ok = log.genuine(latest) if latest is not None else False
    if ok:
        return latest
    if ok is None and latest is not None:
        v.problem(f"the latest checkpoint is signed with key {latest.kid!r}, unknown here")
    else:
        v.problem("the latest checkpoint was altered (its MAC does not match its content)")
    return None


def _check_anchor(log: AuditLog, v: Verdict, end: int, count: int, head: str, who: str) -> None:
    """Record `count` must exist and be the one `who` saw."""
    if count > end:
        v.problem(
            f"records {end + 1}..{count} are missing: {who} saw {count} records; "
            f"the log was cut after record {end}"
        )
    elif count and log.mac_of(count) != head:
        v.problem(f"record {count} is not the one {who} saw: it was rewritten")


def _base(log: AuditLog, v: Verdict, upto: int) -> tuple[int, str]:
    """The newest numbered checkpoint at or below `upto` that is genuine and matches its
    record: (count, head); each one that is not is a problem."""
    base = upto // log.every * log.every
    for _ in range(BASE_FALLBACKS):
        if base <= 0:
            break
        raw, _ = log.state.get(checkpoint_key(base))
        cp = parse_checkpoint(raw)
        trouble = _numbered_trouble(log, base, cp, raw, log.mac_of(base))
        if trouble is None and cp is not None:
            return base, cp.head
        v.problem(trouble or f"checkpoint {base} is unusable")
        base -= log.every
    return 0, GENESIS


def _numbered(log: AuditLog, signed: int) -> dict[int, Any]:
    keys = [checkpoint_key(c) for c in range(log.every, signed + 1, log.every)]
    got = log.state.get_many(keys)
    return {c: got.get(checkpoint_key(c)) for c in range(log.every, signed + 1, log.every)}


def _numbered_trouble(
    log: AuditLog, count: int, cp: Checkpoint | None, raw: Any, record_mac: str | None
) -> str | None:
    if raw is None:
        return f"checkpoint {count} is missing: it was deleted"
    genuine = log.genuine(cp) if cp is not None and cp.count == count else False
    if genuine is None and cp is not None:
        return f"checkpoint {count} is signed with key {cp.kid!r}, unknown here"
    if cp is None or not genuine:
        return f"checkpoint {count} was altered (its MAC does not match its content)"
    if record_mac is None:
        return f"record {count} is missing, yet checkpoint {count} signed it"
    if record_mac != cp.head:
        return f"record {count} is not the one checkpoint {count} signed: it was rewritten"
    return None


def _check_chain(
    log: AuditLog, v: Verdict, base: int, head: str, end: int, numbered: dict[int, Any]
) -> None:
    """Every record base+1..end: there, well-formed, MAC valid, following the one before."""
    prev: str | None = head
    gap: int | None = None
    for start in range(base + 1, end + 1, CHUNK):
        raw = log.records(start, min(start + CHUNK - 1, end))
        for seq in range(start, min(start + CHUNK - 1, end) + 1):
            if seq not in raw:
                gap = gap or seq
                prev = None
                continue
            if gap is not None:
                v.problem(f"records {gap}..{seq - 1} are missing: they were deleted")
                gap = None
            rec = parse_record(raw[seq])
            if rec is None or rec.seq != seq:
                v.problem(f"record {seq} is not a well-formed audit record: it was altered")
                prev = None
                continue
            ok = log.authentic(rec)
            if ok is None:
                v.problem(f"record {seq} is signed with key {rec.kid!r}, unknown here")
            elif not ok:
                v.problem(f"record {seq} was altered (its MAC does not match its content)")
            elif prev is not None and rec.prev != prev:
                v.problem(
                    f"record {seq} does not follow record {seq - 1}: "
                    "records were removed, reordered or replaced"
                )
            prev = rec.mac if ok else None
            if seq in numbered:
                cp_raw = numbered[seq]
                trouble = _numbered_trouble(log, seq, parse_checkpoint(cp_raw), cp_raw, rec.mac)
                if trouble:
                    v.problem(trouble)
