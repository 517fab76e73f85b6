"""A workflow instance's history events as plain rows, with what a diagnosis needs.

The SDK's `get_workflow_history` summarises each event and drops the timers' due times, which
event an indefinite wait is for (durabletask records one as an "optional" timer, due at the end
of time, named after the event) and the version marks (`ctx.is_patched`) a step recorded. So
the gateway reads the durabletask events themselves and keeps those here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from contracts.timestamps import rfc3339_or_none

# The due time durabletask gives an indefinite wait_for_external_event's timer.
NEVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def _type_name(kind: str) -> str:
    """`taskScheduled` as the SDK names it: TASK_SCHEDULED."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", kind).upper()


def _when(ts: Any) -> datetime:
    at: datetime = ts.ToDatetime(tzinfo=UTC)
    return at


def history_row(event: Any) -> dict[str, Any]:
    """One durabletask HistoryEvent as a row: event_id, timestamp, type, name,
    task_scheduled_id, failure; and where they apply fire_at, waits_for (the event an
    indefinite or timed wait is for), retry_of (the task a retry timer delays), timer_id (the
    timer that fired) and patches (version marks first met in this step)."""
    kind = event.WhichOneof("eventType") or "unknown"
    body: Any = getattr(event, kind, None)

    def has(field: str) -> bool:
        return body is not None and field in body.DESCRIPTOR.fields_by_name and body.HasField(field)

    failure = body.failureDetails.errorMessage if has("failureDetails") else None
    row: dict[str, Any] = {
        "event_id": event.eventId,
        "timestamp": rfc3339_or_none(_when(event.timestamp)),
        "type": _type_name(kind),
        "name": getattr(body, "name", "") or None,
        "task_scheduled_id": getattr(body, "taskScheduledId", None),
        "failure": failure,
    }
    if kind == "timerCreated":
        due = _when(body.fireAt)
        row["fire_at"] = None if due >= NEVER else rfc3339_or_none(due)
        if has("externalEvent"):
            row["waits_for"] = body.externalEvent.name
        if has("activityRetry"):
            row["retry_of"] = body.activityRetry.taskExecutionId
    elif kind == "timerFired":
        row["fire_at"] = rfc3339_or_none(_when(body.fireAt))
        row["timer_id"] = body.timerId
    elif kind == "taskScheduled":
        row["task_execution_id"] = body.taskExecutionId
    elif kind == "workflowStarted" and has("version"):
        row["patches"] = list(body.version.patches)
    return row
