"""Small helpers for workflow code; everything here is deterministic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def now(ctx: Any) -> datetime:
    """The workflow's current time, timezone-aware (durabletask gives a naive UTC datetime)."""
    current: datetime = ctx.current_utc_datetime
    return current if current.tzinfo else current.replace(tzinfo=UTC)


TRACK_INSTANCE = "track_instance"


def tracked(ctx: Any, name: str, status: str) -> dict[str, Any]:
    """Input of the track_instance activity: this instance reached `status` now."""
    return {
        "instance_id": ctx.instance_id,
        "name": name,
        "status": status,
        "at": now(ctx).isoformat(),
    }
