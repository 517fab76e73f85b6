"""Token buckets per caller, so that a flood of refused requests cannot fill the audit log.

Refusals of callers we could not identify (no token or an unknown one, a body over the limit,
a delivery without the sidecar's token) are audited through one bucket per client address:
`burst` at once, then `per_minute`. What a bucket turns away is counted, never forgotten: the
count becomes one summary record when the caller is let through again, when it has been quiet
for `quiet_s`, or when the app stops. The table holds at most `max_callers` addresses; beyond
that, new addresses share one bucket ("other callers"), so rotating addresses buys nothing.

The buckets are per process: with N replicas a caller gets N times the rate, still bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

OTHERS = "other callers"


@dataclass
class Suppressed:
    """Refusals of one caller that were counted instead of written."""

    caller: str
    count: int
    first: datetime
    last: datetime
    kinds: dict[str, int] = field(default_factory=dict)  # "401": 3, "unsigned": 1, ...
    quiet_from: float = 0.0  # clock() of the last one

    def add(self, other: Suppressed) -> None:
        self.count += other.count
        self.first, self.last = min(self.first, other.first), max(self.last, other.last)
        for kind, n in other.kinds.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + n
        self.quiet_from = max(self.quiet_from, other.quiet_from)


class RefusalLimiter:
    """Admit or count the audited refusals of unidentified callers, per caller."""

    def __init__(
        self,
        burst: int = 20,
        per_minute: float = 30.0,
        *,
        quiet_s: float = 60.0,
        max_callers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst, self.rate, self.quiet_s = burst, per_minute / 60.0, quiet_s
        self.max_callers, self.clock = max_callers, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, when)
        self._pending: dict[str, Suppressed] = {}
        self._lock = threading.Lock()

    def admit(self, caller: str, kind: str) -> bool:
        """True when this refusal (of `kind`: the status, or what was wrong) should be
        written; else it is counted against `caller`."""
        now = self.clock()
        with self._lock:
            caller = self._slot(caller, now)
            tokens = self._tokens(caller, now)
            if tokens >= 1:
                self._buckets[caller] = (tokens - 1, now)
                return True
            self._buckets[caller] = (tokens, now)
            stamp = datetime.now(UTC)
            one = Suppressed(caller, 1, stamp, stamp, {kind: 1}, now)
            if caller in self._pending:
                self._pending[caller].add(one)
            else:
                self._pending[caller] = one
            return False

    def take(self, caller: str | None = None, everything: bool = False) -> list[Suppressed]:
        """Remove and return the counts to write: `caller`'s, and those quiet for `quiet_s`."""
        now = self.clock()
        with self._lock:
            due = [
                c
                for c, s in self._pending.items()
                if everything or c == caller or now - s.quiet_from >= self.quiet_s
            ]
            return [self._pending.pop(c) for c in due]

    def give_back(self, gone: Suppressed) -> None:
        """Keep a count whose summary could not be written, to try again later."""
        with self._lock:
            if gone.caller in self._pending:
                self._pending[gone.caller].add(gone)
            else:
                self._pending[gone.caller] = gone

    def _tokens(self, caller: str, now: float) -> float:
        tokens, when = self._buckets.get(caller, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - when) * self.rate)

    def _slot(self, caller: str, now: float) -> str:
        """`caller`, or the shared slot when the table is full of busy callers."""
        if caller in self._buckets or len(self._buckets) < self.max_callers:
            return caller
        idle = [
            c
            for c in self._buckets
            if c not in self._pending and self._tokens(c, now) >= self.burst
        ]
        for c in idle:
            del self._buckets[c]
        return caller if len(self._buckets) < self.max_callers else OTHERS
