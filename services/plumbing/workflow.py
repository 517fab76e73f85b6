"""Small helpers for workflow code; everything here is deterministic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dapr.ext.workflow import RetryPolicy

# Activities publish and write state through the sidecar: a hiccup there must not fail an
# order for good. Five attempts, 1 + 2 + 4 + 8 = 15 s of back-off between them (plus the
# attempts' own time), then the workflow fails visibly.
ACTIVITY_RETRY = RetryPolicy(
    first_retry_interval=timedelta(seconds=1),
    max_number_of_attempts=5,
    backoff_coefficient=2.0,
    max_retry_interval=timedelta(seconds=15),
)


def now(ctx: Any) -> datetime:
    """The workflow's current time, timezone-aware (durabletask gives a naive UTC datetime)."""
    current: datetime = ctx.current_utc_datetime
    return current if current.tzinfo else current.replace(tzinfo=UTC)


def activity(ctx: Any, name: str, data: Any) -> Any:
    """Call an activity by name with the project's retry policy."""
    return ctx.call_activity(name, input=data, retry_policy=ACTIVITY_RETRY)
