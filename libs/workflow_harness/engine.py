"""The SDK's own orchestration executor, as the worker runs it, plus the history events a
sidecar would write. The harness and the replayer both drive workflows through this.

The worker replays a workflow's whole history into a fresh context on every step
(`_OrchestrationExecutor.execute(instance_id, old_events, new_events)`) and returns the actions
the code took; an exception is swallowed there and turned into a FAILED completion. `Executor`
keeps that exception, and the event it happened at, so a test can see it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import dapr.ext.workflow._durabletask.internal.helpers as ph
import dapr.ext.workflow._durabletask.internal.protos as pb
import dapr.ext.workflow._durabletask.internal.timer as timers
from dapr.ext.workflow import DaprWorkflowContext
from dapr.ext.workflow import _model_protocol as models
from dapr.ext.workflow._durabletask import worker
from dapr.ext.workflow._durabletask.internal import shared
from dapr.ext.workflow._durabletask.task import NonDeterminismError
from dapr.ext.workflow.logger import LoggerOptions
from google.protobuf.timestamp_pb2 import Timestamp

Workflow = Callable[..., Any]
# History events that confirm an action the code took; none can follow the code's end.
_CONFIRMATIONS = ("taskScheduled", "timerCreated", "childWorkflowInstanceCreated")
EventHook = Callable[[Any, pb.HistoryEvent], None]

STATUS = {
    pb.ORCHESTRATION_STATUS_COMPLETED: "COMPLETED",
    pb.ORCHESTRATION_STATUS_FAILED: "FAILED",
    pb.ORCHESTRATION_STATUS_TERMINATED: "TERMINATED",
    pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW: "CONTINUED_AS_NEW",
}


def workflow_name(workflow: Workflow) -> str:
    """The name the runtime registers a workflow function under."""
    return str(getattr(workflow, "__dict__", {}).get("_dapr_alternate_name") or workflow.__name__)


def encode(value: Any) -> str | None:
    """The SDK's JSON encoding of a payload (None stays absent, as the SDK sends it)."""
    return None if value is None else shared.to_json(value)


def decode(value: Any) -> Any:
    """The SDK's JSON decoding of a protobuf StringValue payload (absent or empty is None)."""
    return None if ph.is_empty(value) else shared.from_json(value.value)


def aware(ts: Timestamp) -> datetime:
    at: datetime = ts.ToDatetime(tzinfo=UTC)
    return at


def stamped(event: pb.HistoryEvent, at: datetime) -> pb.HistoryEvent:
    event.timestamp.FromDatetime(at.astimezone(UTC).replace(tzinfo=None))
    return event


def started(at: datetime) -> pb.HistoryEvent:
    """The event that opens every step (durabletask's OrchestratorStarted): it sets the time."""
    return stamped(ph.new_workflow_started_event(), at)


def new_patches(history: Sequence[pb.HistoryEvent], patches: Sequence[str]) -> list[str]:
    """The patches (`ctx.is_patched`) a step reported that no earlier step recorded: what the
    sidecar writes on the step's workflowStarted event, so that a replay finds them."""
    left = Counter(
        p
        for e in history
        if e.HasField("workflowStarted")
        for p in e.workflowStarted.version.patches
    )
    fresh = []
    for patch in patches:
        if left[patch] > 0:
            left[patch] -= 1
        else:
            fresh.append(patch)
    return fresh


def registry(
    workflow: Workflow, name: str, context: type[DaprWorkflowContext] = DaprWorkflowContext
) -> worker._Registry:
    """A registry holding `workflow` as WorkflowRuntime.register_workflow wraps it: a Dapr
    context, and the input coerced to the model the function annotates (if any)."""
    accepts_input, input_model = models.resolve_input(workflow)
    options = LoggerOptions(log_level="WARNING")

    def orchestrator(ctx: Any, inp: Any = None) -> Any:
        wf_ctx = context(ctx, options)
        if not accepts_input:
            return workflow(wf_ctx)
        if inp is not None and input_model is not None and not isinstance(inp, input_model):
            inp = models.coerce_to_model(inp, input_model)
        return workflow(wf_ctx, inp)

    found = worker._Registry()
    found.add_named_orchestrator(name, orchestrator)
    return found


class Executor(worker._OrchestrationExecutor):
    """The worker's executor, keeping the first exception it would swallow and where."""

    def __init__(self, found: worker._Registry, before_event: EventHook | None = None) -> None:
        # A logger of its own, outside the logging tree: the SDK logs every step at INFO.
        super().__init__(found, logging.Logger("workflow_harness.executor", logging.WARNING))
        self.before_event = before_event
        self.ctx: Any = None
        self.position = -1
        self.error: tuple[int, pb.HistoryEvent, Exception] | None = None
        self._depth = 0

    def run(
        self,
        instance_id: str,
        old: Sequence[pb.HistoryEvent],
        new: Sequence[pb.HistoryEvent],
    ) -> Any:
        """execute(), as the worker calls it; returns its ExecutionResults."""
        return self.execute(instance_id, list(old), list(new))

    def process_event(self, ctx: Any, event: pb.HistoryEvent) -> None:
        self.ctx = ctx
        if self._depth == 0:
            self.position += 1
        self._depth += 1
        try:
            if ctx._is_complete and event.WhichOneof("eventType") in _CONFIRMATIONS:
                # The SDK would trip over its own completion action here (NotImplementedError).
                raise NonDeterminismError(
                    f"the history goes on with {describe_event(event)}, but the code has "
                    "already ended"
                )
            if self.before_event is not None:
                self.before_event(ctx, event)
            super().process_event(ctx, event)
        except Exception as exc:
            if self.error is None:
                self.error = (self.position, event, exc)
            raise
        finally:
            self._depth -= 1


def completion(actions: Sequence[pb.WorkflowAction]) -> pb.CompleteWorkflowAction | None:
    for action in actions:
        if action.HasField("completeWorkflow"):
            return action.completeWorkflow
    return None


def describe_event(event: pb.HistoryEvent) -> str:
    """One line naming a history event, e.g. "taskScheduled #3 'publish_order_status'"."""
    kind = event.WhichOneof("eventType") or "unknown"
    body: Any = getattr(event, kind, None)
    if kind == "taskScheduled":
        return f"taskScheduled #{event.eventId} {body.name!r}"
    if kind == "timerCreated":
        return f"timerCreated #{event.eventId} for {fire_time(body.fireAt)}"
    if kind in ("taskCompleted", "taskFailed"):
        return f"{kind} of #{body.taskScheduledId}"
    if kind == "timerFired":
        return f"timerFired #{body.timerId}"
    if kind in ("eventRaised", "executionStarted"):
        return f"{kind} {body.name!r}"
    if kind == "executionCompleted":
        return f"executionCompleted {STATUS.get(body.workflowStatus, body.workflowStatus)}"
    return kind


def describe_action(action: pb.WorkflowAction) -> str:
    """One line naming what the code asked for, e.g. "call_activity 'fulfil_order'"."""
    kind = action.WhichOneof("workflowActionType")
    if kind == "scheduleTask":
        return f"call_activity {action.scheduleTask.name!r} (#{action.id})"
    if kind == "createTimer":
        if timers.is_optional_timer_action(action):
            return f"wait_for_external_event {action.createTimer.externalEvent.name!r}"
        return f"create_timer for {fire_time(action.createTimer.fireAt)} (#{action.id})"
    if kind == "createChildWorkflow":
        return f"call_child_workflow {action.createChildWorkflow.name!r} (#{action.id})"
    if kind == "completeWorkflow":
        status = action.completeWorkflow.workflowStatus
        return f"complete as {STATUS.get(status, status)}"
    return str(kind)


def fire_time(ts: Timestamp) -> str:
    return aware(ts).isoformat()
