"""Schedules as the Dapr scheduler takes them, read to check them and to say when they fire next.

A schedule is a cron expression with six fields, seconds first (`0 30 3 * * 0`: Sundays at
03:30:00), each `*`, a number, a range `a-b`, a list `a,b` or a step `*/n` / `a-b/n` (days of
the week 0-6, Sunday 0); or `@every <duration>` (`@every 24h`), or one of `@yearly`, `@monthly`,
`@weekly`, `@daily` (`@midnight`), `@hourly`. The scheduler fires in its own time zone; ours run
in UTC, and so does `next_fire`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from contracts.policy import parse_duration

NAMED = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
# (name, lowest, highest) of the six fields, in order.
FIELDS = (
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 6),
)


class BadSchedule(ValueError):
    """A schedule the scheduler would not take; the message says what is wrong."""


@dataclass(frozen=True)
class Schedule:
    text: str
    fields: tuple[frozenset[int], ...] = ()
    every: timedelta | None = None
    any_day: tuple[bool, bool] = (True, True)  # day of month, day of week given as `*`

    def next_fire(self, after: datetime) -> datetime | None:
        """The first time after `after` (UTC) the schedule fires; None for `@every`, whose
        rhythm counts from when the job was created, which only the scheduler knows."""
        if self.every is not None:
            return None
        seconds, minutes, hours, days, months, weekdays = self.fields
        start = after.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        day = start.replace(hour=0, minute=0, second=0)
        for _ in range(366 * 5):
            if day.month in months and self._day_matches(day, days, weekdays):
                for h in sorted(hours):
                    for m in sorted(minutes):
                        for s in sorted(seconds):
                            when = day.replace(hour=h, minute=m, second=s)
                            if when >= start:
                                return when
            day += timedelta(days=1)
        return None

    def _day_matches(self, day: datetime, days: frozenset[int], weekdays: frozenset[int]) -> bool:
        # As robfig/cron: when both are restricted either may match, else both must.
        dom, dow = day.day in days, (day.isoweekday() % 7) in weekdays
        return dom and dow if any(self.any_day) else dom or dow

    @property
    def for_dapr(self) -> str:
        """The schedule as the scheduler is given it (a period in seconds, Go style)."""
        return f"@every {int(self.every.total_seconds())}s" if self.every else self.text


def parse_schedule(text: str) -> Schedule:
    """The schedule `text` stands for; BadSchedule says what is wrong with it."""
    spec = text.strip()
    if spec.startswith("@every"):
        try:
            every = parse_duration(spec.removeprefix("@every").strip())
        except ValueError as exc:
            raise BadSchedule(f"{text!r}: {exc}") from None
        if every <= timedelta(0):
            raise BadSchedule(f"{text!r}: the period must be positive")
        return Schedule(spec, every=every)
    expression = NAMED.get(spec, spec)
    if expression.startswith("@"):
        raise BadSchedule(f"{text!r}: unknown; use one of {', '.join(NAMED)} or @every <duration>")
    parts = expression.split()
    if len(parts) != len(FIELDS):
        raise BadSchedule(
            f"{text!r}: a cron schedule has six fields, seconds first (e.g. '0 30 3 * * 0': "
            f"Sundays at 03:30), not {len(parts)}"
        )
    fields = tuple(_field(p, *f) for p, f in zip(parts, FIELDS, strict=True))
    return Schedule(spec, fields=fields, any_day=(parts[3] == "*", parts[5] == "*"))


def _field(part: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in part.split(","):
        body, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                first, last = low, high
            elif "-" in body:
                first, last = (int(x) for x in body.split("-", 1))
            else:
                first = last = int(body)
        except ValueError:
            raise BadSchedule(f"{name} {item!r} is not a number, range, list or step") from None
        if step < 1 or not low <= first <= last <= high:
            raise BadSchedule(f"{name} {item!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)
