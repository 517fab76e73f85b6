"""Replay a recorded workflow history against today's code, as Temporal's replayer does.

The history is fed to the SDK's own orchestration executor, the one the worker runs, every
event as a replayed one, exactly as a worker that picks up an instance already in flight
rebuilds it. Where Dapr would fail that instance, the replay fails: an activity or timer at an
event id that today's code does not ask for there (the SDK's own check), an exception where the
recorded run went on, or an ending other than the recorded one. `strict=True` also wants every
activity input, timer time and the result to repeat, which holds when the code and the history
are the same run (the harness's determinism check) but not across a release that changed an
input on purpose.

While the code replays, the wall clock it could read is frozen far from the recorded times (see
clock.py), so a branch on `datetime.now()` takes another turn and shows up here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb
import dapr.ext.workflow._durabletask.internal.timer as timers
from dapr.ext.workflow._durabletask.task import NonDeterminismError

from workflow_harness import engine
from workflow_harness.clock import REPLAY_CLOCK_SHIFT, WallClock
from workflow_harness.histories import load_history


class ReplayError(AssertionError):
    """Today's code does not reproduce the history; `index` and `event` say where first."""

    def __init__(self, message: str, index: int, event: pb.HistoryEvent) -> None:
        super().__init__(message)
        self.index, self.event = index, event


@dataclass(frozen=True)
class Replay:
    """How the replayed instance stands after the last recorded event."""

    workflow: str
    instance_id: str
    events: int
    status: str  # COMPLETED, FAILED, TERMINATED, or RUNNING when the history had not ended
    result: Any
    custom_status: str | None


def replay(
    workflow: Callable[..., Any],
    history: Sequence[pb.HistoryEvent] | str | Path,
    *,
    name: str | None = None,
    strict: bool = False,
    clock_shift: timedelta = REPLAY_CLOCK_SHIFT,
) -> Replay:
    """Replay `history` (events, or a file saved by `save_history`) into `workflow`.

    `name` is the name the workflow is registered under (default: its function name); it must
    be the history's. Raises ReplayError naming the first event where today's code diverges.
    """
    events = load_history(history) if isinstance(history, str | Path) else list(history)
    start = next((e for e in events if e.HasField("executionStarted")), None)
    if start is None:
        raise ValueError("not a workflow history: it has no executionStarted event")
    recorded_name = start.executionStarted.name
    own_name = name or engine.workflow_name(workflow)
    if own_name != recorded_name:
        raise ValueError(f"the history is of workflow {recorded_name!r}, not {own_name!r}")
    instance_id = start.executionStarted.workflowInstance.instanceId
    end = next((i for i, e in enumerate(events) if e.HasField("executionCompleted")), None)
    body = events if end is None else events[:end]
    last = max(engine.aware(e.timestamp) for e in body)

    executor = engine.Executor(
        engine.registry(workflow, recorded_name), _same_inputs if strict else None
    )
    with WallClock(workflow).frozen(last + clock_shift):
        results = executor.run(instance_id, body, [engine.started(last)])
    done = engine.completion(results.actions)

    def diverged(index: int, reason: str) -> ReplayError:
        index = min(index, len(events) - 1)
        event = events[index]
        return ReplayError(
            f"replaying {recorded_name} {instance_id!r} against today's code diverged at event "
            f"{index} of {len(events)} ({engine.describe_event(event)}): {reason}",
            index,
            event,
        )

    recorded = events[end].executionCompleted if end is not None else None
    if executor.error is not None:
        index, _, exc = executor.error
        steps = [i for i, e in enumerate(body) if e.HasField("workflowStarted")]
        failed_as_recorded = (
            recorded is not None
            and recorded.workflowStatus == pb.ORCHESTRATION_STATUS_FAILED
            and recorded.failureDetails.errorType == type(exc).__name__
            and index >= max(steps, default=0)  # in the step that failed
        )
        if not failed_as_recorded:
            reason = str(exc) if isinstance(exc, NonDeterminismError) else _raised(exc)
            raise diverged(index, reason) from exc
    if end is not None and recorded is not None:  # the history ended: so must the code
        ending = engine.STATUS.get(recorded.workflowStatus, str(recorded.workflowStatus))
        if done is None:
            doing = [engine.describe_action(a) for a in results.actions] or ["waits"]
            raise diverged(
                end, f"the history ends {ending} here, but today's code goes on: {doing}"
            )
        if done.workflowStatus != recorded.workflowStatus:
            today = engine.STATUS.get(done.workflowStatus, str(done.workflowStatus))
            raise diverged(end, f"the history ends {ending}, today's code {today}")
        if strict and engine.decode(done.result) != engine.decode(recorded.result):
            raise diverged(
                end,
                "today's code returns another result: "
                + _difference(engine.decode(recorded.result), engine.decode(done.result)),
            )
    return Replay(
        workflow=recorded_name,
        instance_id=instance_id,
        events=len(events),
        status=engine.STATUS.get(done.workflowStatus, "?") if done else "RUNNING",
        result=engine.decode(done.result) if done else None,
        custom_status=results.encoded_custom_status,
    )


def _same_inputs(ctx: Any, event: pb.HistoryEvent) -> None:
    """Before the SDK matches a recorded action, want the same input or fire time too."""
    action = ctx._pending_actions.get(event.eventId) if event.eventId >= 0 else None
    if action is None:
        return  # the SDK's own check reports it
    if event.HasField("taskScheduled") and action.HasField("scheduleTask"):
        recorded, today = event.taskScheduled, action.scheduleTask
        if recorded.name == today.name and engine.decode(recorded.input) != engine.decode(
            today.input
        ):
            raise NonDeterminismError(
                f"activity {today.name!r} (#{event.eventId}) is called with another input: "
                + _difference(engine.decode(recorded.input), engine.decode(today.input))
            )
    elif (
        event.HasField("timerCreated")
        and action.HasField("createTimer")
        and not timers.is_optional_timer_event(event)
        and not timers.is_optional_timer_action(action)
        and event.timerCreated.fireAt != action.createTimer.fireAt
    ):
        raise NonDeterminismError(
            f"timer #{event.eventId} fires at {engine.fire_time(action.createTimer.fireAt)}; "
            f"the history has {engine.fire_time(event.timerCreated.fireAt)}"
        )


def _raised(exc: Exception) -> str:
    return f"today's code raises {type(exc).__name__}: {exc}"


def _difference(recorded: Any, today: Any) -> str:
    if isinstance(recorded, dict) and isinstance(today, dict):
        keys = sorted(k for k in recorded.keys() | today.keys() if recorded.get(k) != today.get(k))
        parts = [f"{k}: {recorded.get(k)!r} recorded, {today.get(k)!r} today" for k in keys[:3]]
        return "; ".join(parts) + (f" (and {len(keys) - 3} more)" if len(keys) > 3 else "")
    return f"{_short(recorded)} recorded, {_short(today)} today"


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
