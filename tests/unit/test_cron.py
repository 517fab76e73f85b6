"""Schedules as the Dapr scheduler takes them: checked, and when they fire next (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from plumbing.cron import BadSchedule, parse_schedule
from plumbing.settings import ServiceSettings

MONDAY = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("text", "after", "fires"),
    [
        ("0 30 3 * * 0", MONDAY, datetime(2026, 11, 29, 3, 30, tzinfo=UTC)),  # next Sunday
        ("@weekly", MONDAY, datetime(2026, 11, 29, 0, 0, tzinfo=UTC)),
        ("@daily", MONDAY, datetime(2026, 11, 24, 0, 0, tzinfo=UTC)),
        ("@hourly", MONDAY, datetime(2026, 11, 23, 11, 0, tzinfo=UTC)),
        ("*/15 * * * * *", MONDAY, datetime(2026, 11, 23, 10, 0, 15, tzinfo=UTC)),
        ("0 0 9-17/4 * * 1-5", MONDAY, datetime(2026, 11, 23, 13, 0, tzinfo=UTC)),
        ("0 0 0 1 * *", MONDAY, datetime(2026, 12, 1, tzinfo=UTC)),
        ("0 0 0 29 2 *", MONDAY, datetime(2028, 2, 29, tzinfo=UTC)),  # the next leap day
        # Both day fields restricted: either may match (the 1st, or any Sunday).
        ("0 0 0 1 * 0", MONDAY, datetime(2026, 11, 29, tzinfo=UTC)),
    ],
)
def test_a_schedule_fires_next_when_cron_says(text: str, after: datetime, fires: datetime) -> None:
    assert parse_schedule(text).next_fire(after) == fires


def test_a_period_goes_to_dapr_in_seconds_and_has_no_fixed_next_time() -> None:
    every = parse_schedule("@every PT36H")
    assert every.for_dapr == "@every 129600s" and every.every == timedelta(hours=36)
    assert every.next_fire(MONDAY) is None
    assert parse_schedule("0 30 3 * * 0").for_dapr == "0 30 3 * * 0"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("30 3 * * 0", "six fields, seconds first"),
        ("0 61 3 * * 0", "minute '61' is outside 0-59"),
        ("0 0 3 * * 7", "day of week '7' is outside 0-6"),
        ("0 0 3 * * MON", "day of week 'MON' is not a number"),
        ("0 0 */0 * * *", "outside 0-23"),
        ("@fortnightly", "unknown; use one of @yearly"),
        ("@every soon", "is not a duration"),
        ("@every 0s", "must be positive"),
    ],
)
def test_a_bad_schedule_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(BadSchedule, match=says):
        parse_schedule(text)


def test_retention_settings_are_checked_at_start_up() -> None:
    default = ServiceSettings.from_env("orders", {})
    assert default.retention_schedule == "0 30 3 * * 0"
    assert default.retention_age == timedelta(days=90) and not default.retention_dry_run
    off = ServiceSettings.from_env("orders", {"RETENTION_SCHEDULE": "off"})
    assert off.retention_schedule == "off"
    with pytest.raises(ValueError, match="RETENTION_SCHEDULE: '30 3 \\* \\* 0': a cron schedule"):
        ServiceSettings.from_env("orders", {"RETENTION_SCHEDULE": "30 3 * * 0"})
