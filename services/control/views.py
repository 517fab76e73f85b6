"""How the control room shows an instance and its history: times in RFC 3339 with `Z`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from contracts.timestamps import rfc3339
from plumbing.gateway import InstanceState


def _json(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def describe(state: InstanceState, payloads: bool) -> dict[str, Any]:
    """An instance as the API shows it: times in RFC 3339 (`Z`), null until it has started."""
    body: dict[str, Any] = {
        "instance_id": state.instance_id,
        "name": state.name,
        "status": state.status,
        "created_at": rfc3339(state.created_at) if state.created_at else None,
        "updated_at": rfc3339(state.updated_at) if state.updated_at else None,
        "custom_status": _json(state.custom_status),
        "failure": state.failure,
    }
    if payloads:
        body |= {"input": _json(state.input), "output": _json(state.output)}
    return body


def in_time_order(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History rows by time (ties keep Dapr's order), numbered from 1 in `seq`.

    Dapr stores events as they are committed, so a task's completion can follow an event with
    a later time; it dates them in naive UTC; and its `event_id` is -1 for events that are not
    tasks. Here times carry their zone, and a missing event id is None."""

    def at(event: dict[str, Any]) -> datetime:
        raw = event.get("timestamp")
        when = datetime.fromisoformat(raw) if raw else datetime.min
        return when if when.tzinfo else when.replace(tzinfo=UTC)

    def event_id(event: dict[str, Any]) -> int | None:
        eid = event.get("event_id")
        return eid if isinstance(eid, int) and eid >= 0 else None

    return [
        {
            "seq": n,
            **e,
            "timestamp": rfc3339(at(e)) if e.get("timestamp") else None,
            "event_id": event_id(e),
        }
        for n, e in enumerate(sorted(events, key=at), start=1)
    ]
