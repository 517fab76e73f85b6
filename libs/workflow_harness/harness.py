"""A strict, in-process harness for Dapr workflow generator functions.

The harness plays the sidecar: it keeps the instance's history as durabletask writes it, and
each step runs the workflow through the SDK's own orchestration executor (the one the worker
uses), replaying the whole history as the worker does. So the SDK's rules apply as they would on
Dapr: JSON encoding of every input, result and event; retry policies with their back-off timers
and non-retryable errors; event buffering; its non-determinism checks. Time is virtual.

Strict means a test cannot pass by accident: a workflow failure raises in the test at the step
where it happens (wrap that step in `pytest.raises` when the failure is the point), an exception
in test code is raised as it is, and a context call the harness does not model is a
HarnessError naming it. See README.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dapr.ext.workflow._durabletask.internal.helpers as ph
import dapr.ext.workflow._durabletask.internal.protos as pb
import dapr.ext.workflow._durabletask.internal.timer as timers
from dapr.ext.workflow import DaprWorkflowContext

from workflow_harness import engine
from workflow_harness.clock import REPLAY_CLOCK_SHIFT, WallClock
from workflow_harness.replay import replay

DEFAULT_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
_NON_RETRYABLE = "NonRetryableError"  # the error type the SDK never retries


class HarnessError(AssertionError):
    """The test drove the harness in a way the workflow cannot follow, or used what it does not
    model: a test bug, never a workflow failure."""


class ActivityFailed(Exception):
    """Raise from a scripted activity to fail it as the activity would fail on Dapr.

    `error_type` is what the runtime records (an activity's exception class name); with
    `retryable=False` it is NonRetryableError, which the SDK's retry policy never retries.
    """

    def __init__(
        self, message: str = "", *, error_type: str | None = None, retryable: bool = True
    ) -> None:
        super().__init__(message)
        self.error_type = error_type or (type(self).__name__ if retryable else _NON_RETRYABLE)


@dataclass(frozen=True)
class Call:
    """One attempt of an activity: its name, its input after the JSON round trip, when it
    started (virtual time), and which attempt of its retry policy it is."""

    name: str
    input: Any
    at: datetime
    attempt: int = 1


@dataclass
class _Attempt:
    task_id: int
    call: Call
    encoded_input: str | None
    held: bool


class _HarnessContext(DaprWorkflowContext):
    """The SDK's DaprWorkflowContext, refusing at once what the harness does not model."""

    @staticmethod
    def unmodelled(what: str) -> HarnessError:
        return HarnessError(f"the workflow called {what}, which the harness does not model")

    def call_child_workflow(self, workflow: Any, **_: Any) -> Any:  # type: ignore[override]
        name = workflow if isinstance(workflow, str) else getattr(workflow, "__name__", "?")
        raise self.unmodelled(f"ctx.call_child_workflow({name!r})")

    def continue_as_new(self, new_input: Any, *, save_events: bool = False) -> None:
        raise self.unmodelled("ctx.continue_as_new(...)")


@dataclass
class WorkflowHarness:
    """Drive one workflow instance step by step on a virtual clock, as a sidecar would."""

    workflow: Callable[..., Any]
    input: Any = None
    activities: dict[str, Any] = field(default_factory=dict)
    instance_id: str = "wf-test"
    now: datetime = DEFAULT_START
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or engine.workflow_name(self.workflow)
        self.now = self.now if self.now.tzinfo else self.now.replace(tzinfo=UTC)
        self.history: list[pb.HistoryEvent] = []
        self.calls: list[Call] = []
        self.statuses: list[str] = []
        self.custom_status: str | None = None
        self.status = "PENDING"  # then RUNNING, COMPLETED, FAILED
        self.result: Any = None
        self.failure: BaseException | None = None
        self.dropped_events: list[tuple[str, Any]] = []
        self._timers: dict[int, datetime] = {}
        self._running: list[_Attempt] = []
        self._holds: dict[str, int | None] = {}
        self._waiting: set[str] = set()
        self._unmodelled: HarnessError | None = None
        self._registry = engine.registry(self.workflow, self.name, self._context_type())
        self._clock = WallClock(self.workflow)

    # ---- driving -----------------------------------------------------------------------

    def start(self) -> WorkflowHarness:
        """Schedule the instance and run it until it waits for an event, a timer or a held
        activity (or ends)."""
        if self.status != "PENDING":
            raise HarnessError(f"instance {self.instance_id!r} was already started")
        start = pb.HistoryEvent(
            eventId=-1,
            executionStarted=pb.ExecutionStartedEvent(
                name=self.name,
                input=ph.get_string_value(engine.encode(self.input)),
                workflowInstance=pb.WorkflowInstance(instanceId=self.instance_id),
            ),
        )
        self.status = "RUNNING"
        self._step(start)
        return self

    def raise_event(self, name: str, data: Any = None) -> WorkflowHarness:
        """Raise an event into the instance now, as DaprWorkflowClient.raise_workflow_event.

        The SDK hands it to the oldest waiter of that name, else buffers it. An instance that
        was never started does not exist: that is an error, as on Dapr. A finished instance
        drops the event (it is kept in `dropped_events`)."""
        if self.status == "PENDING":
            raise HarnessError(
                f"no workflow instance {self.instance_id!r} exists: start() it first "
                "(Dapr refuses an event for an instance that does not exist)"
            )
        # The SDK's client sends a falsy payload as no payload at all: so do we.
        encoded = engine.encode(data) if data else None
        if self.done:
            self.dropped_events.append((name, engine.decode(ph.get_string_value(encoded))))
            return self
        self._step(ph.new_event_raised_event(name, encoded))
        return self

    def advance(
        self, by: timedelta | None = None, *, to: datetime | None = None
    ) -> WorkflowHarness:
        """Move the clock forward, firing every durable timer due on the way, in order
        (workflow timers, retry back-offs and event timeouts alike)."""
        target = to if to is not None else self.now + (by or timedelta(0))
        if target < self.now:
            raise HarnessError("time does not go backwards")
        while not self.done:
            due = self._due(target)
            if due is None:
                break
            self.now = max(self.now, self._timers[due])
            self._fire(due)
        self.now = target
        return self

    def hold(self, name: str, calls: int | None = 1) -> WorkflowHarness:
        """Keep the next `calls` calls of activity `name` (None: all of them) running until
        `release`, so that events and timers can arrive while they run."""
        self._holds[name] = calls
        return self

    def release(self, name: str | None = None) -> WorkflowHarness:
        """Finish the oldest held activity call (of `name`, if given): its script runs now."""
        held = [a for a in self._running if a.held and name in (None, a.call.name)]
        if not held:
            raise HarnessError(f"no held activity call{' of ' + repr(name) if name else ''}")
        held[0].held = False
        self._settle()
        return self

    def run_until_complete(self, limit: int = 1000) -> Any:
        """Fire the next timer until the workflow ends; return its result."""
        for _ in range(limit):
            if self.done:
                break
            nxt = self.next_timer
            if nxt is None:
                held = [a.call.name for a in self._running if a.held]
                raise HarnessError(
                    f"the workflow waits for events {sorted(self.waiting_for)}"
                    + (f" and held activities {held}" if held else "")
                    + " and no timer is pending: raise an event, release, or check the workflow"
                )
            self.advance(to=nxt)
        if self.failure is not None:
            raise self.failure
        if not self.done:
            raise HarnessError(f"the workflow did not end within {limit} timers")
        return self.result

    def assert_deterministic(self, clock_shift: timedelta = REPLAY_CLOCK_SHIFT) -> None:
        """Replay this instance's history with the SDK's executor, every step replaying, the
        wall clock `clock_shift` away: every activity (name and input) and timer must repeat,
        and the workflow must end as it did. Raises ReplayError naming the first divergence."""
        replay(self.workflow, self.history, name=self.name, strict=True, clock_shift=clock_shift)

    # ---- what a test looks at ----------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.status not in ("PENDING", "RUNNING")

    @property
    def next_timer(self) -> datetime | None:
        return min(self._timers.values()) if self._timers and not self.done else None

    @property
    def waiting_for(self) -> set[str]:
        """Event names (case-folded, as the SDK keys them) that a waiter is pending on."""
        return set() if self.done else set(self._waiting)

    @property
    def running(self) -> list[Call]:
        """Activity calls started and not finished: the held ones."""
        return [a.call for a in self._running]

    def calls_to(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    # ---- the sidecar's side ------------------------------------------------------------

    def _context_type(self) -> type[_HarnessContext]:
        def unmodelled(what: str) -> HarnessError:
            # Kept, so that a workflow that swallows the error still fails the test.
            self._unmodelled = HarnessError(
                f"the workflow called {what}, which the harness does not model: "
                "test it end to end with a sidecar"
            )
            return self._unmodelled

        return type("Context", (_HarnessContext,), {"unmodelled": staticmethod(unmodelled)})

    def _due(self, until: datetime) -> int | None:
        due = sorted((at, tid) for tid, at in self._timers.items() if at <= until)
        return due[0][1] if due else None

    def _fire(self, timer_id: int) -> None:
        fire_at = self._timers.pop(timer_id)
        self._step(timers.new_timer_fired_event(timer_id, fire_at.replace(tzinfo=None)))

    def _step(self, *events: pb.HistoryEvent) -> None:
        """One work item: the SDK replays the history, then takes `events`; then settle."""
        self._execute(list(events))
        self._settle()

    def _settle(self) -> None:
        """Fire timers already due and finish activities nobody holds, one at a time."""
        while not self.done:
            if (due := self._due(self.now)) is not None:
                self._fire(due)
            elif ready := [a for a in self._running if not a.held]:
                self._finish(ready[0])
            else:
                break

    def _execute(self, new: list[pb.HistoryEvent]) -> None:
        batch = [engine.started(self.now), *(engine.stamped(e, self.now) for e in new)]
        executor = engine.Executor(self._registry)
        with self._clock.frozen(self.now):
            results = executor.run(self.instance_id, self.history, batch)
        # As Dapr keeps versioning: the patches this step met first go on its opening event.
        batch[0].workflowStarted.version.patches.extend(
            engine.new_patches(self.history, results.patches or [])
        )
        self.history.extend(batch)
        if executor.ctx is not None:
            self._waiting = {name for name, tasks in executor.ctx._pending_events.items() if tasks}
        if results.encoded_custom_status != self.custom_status:
            self.custom_status = results.encoded_custom_status
            if self.custom_status is not None:
                self.statuses.append(self.custom_status)
        if self._unmodelled is not None:
            raise self._unmodelled
        error = executor.error[2] if executor.error else None
        if isinstance(error, HarnessError):
            raise error
        for action in results.actions:
            self._apply(action, error)
        if error is not None and self.status != "FAILED":
            # An exception the SDK could not report: raised after the workflow completed (a
            # non-determinism), or while encoding its result (on Dapr the instance hangs).
            self._fail(error)

    def _apply(self, action: pb.WorkflowAction, error: Exception | None) -> None:
        kind = action.WhichOneof("workflowActionType")
        if kind == "scheduleTask":
            task = action.scheduleTask
            scheduled = pb.HistoryEvent(
                eventId=action.id,
                taskScheduled=pb.TaskScheduledEvent(
                    name=task.name,
                    input=task.input if task.HasField("input") else None,
                    taskExecutionId=task.taskExecutionId,
                ),
            )
            self.history.append(engine.stamped(scheduled, self.now))
            prior = [a for a in self.history if a.HasField("taskScheduled")]
            attempt = sum(e.taskScheduled.taskExecutionId == task.taskExecutionId for e in prior)
            call = Call(task.name, engine.decode(task.input), self.now, attempt)
            self.calls.append(call)
            encoded = task.input.value if task.HasField("input") else None
            self._running.append(_Attempt(action.id, call, encoded, self._held(task.name)))
        elif kind == "createTimer":
            timer = action.createTimer
            event = timers.new_timer_created_event(action.id, timer.fireAt)
            origin = timer.WhichOneof("origin")  # what the timer is for, recorded as Dapr does
            if origin is not None:
                getattr(event.timerCreated, origin).CopyFrom(getattr(timer, origin))
            self.history.append(engine.stamped(event, self.now))
            if not timers.is_optional_timer_action(action):  # an indefinite wait: it never fires
                self._timers[action.id] = engine.aware(timer.fireAt)
        elif kind == "completeWorkflow":
            self._complete(action, error)
        else:
            what = {"createChildWorkflow": "ctx.call_sub_orchestrator (a child workflow)"}
            raise HarnessError(
                f"the workflow asked for {what.get(str(kind), kind)}, which the harness does "
                "not model: test it end to end with a sidecar"
            )

    def _complete(self, action: pb.WorkflowAction, error: Exception | None) -> None:
        done = action.completeWorkflow
        if done.workflowStatus == pb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW:
            raise HarnessError(
                "the workflow called ctx.continue_as_new(...), which the harness does not "
                "model: test it end to end with a sidecar"
            )
        event = pb.HistoryEvent(
            eventId=action.id,
            executionCompleted=pb.ExecutionCompletedEvent(
                workflowStatus=done.workflowStatus,
                result=done.result if done.HasField("result") else None,
                failureDetails=done.failureDetails if done.HasField("failureDetails") else None,
            ),
        )
        self.history.append(engine.stamped(event, self.now))
        if done.workflowStatus == pb.ORCHESTRATION_STATUS_FAILED:
            details = done.failureDetails
            self._fail(error or WorkflowFailed(f"{details.errorType}: {details.errorMessage}"))
        else:
            self.status = engine.STATUS.get(done.workflowStatus, str(done.workflowStatus))
            self.result = engine.decode(done.result)

    def _fail(self, error: BaseException) -> None:
        self.status, self.failure = "FAILED", error
        error.add_note(
            f"workflow_harness: {self.name} {self.instance_id!r} failed at {self.now.isoformat()}"
            " (on Dapr it would end FAILED); a test that expects this wraps the step in "
            "pytest.raises"
        )
        raise error

    def _held(self, name: str) -> bool:
        if name not in self._holds:
            return False
        left = self._holds[name]
        if left is not None:
            if left <= 1:
                del self._holds[name]
            else:
                self._holds[name] = left - 1
        return True

    def _finish(self, attempt: _Attempt) -> None:
        """Run the activity's script on its JSON-decoded input and report the outcome."""
        self._running.remove(attempt)
        name = attempt.call.name
        if name not in self.activities:
            raise HarnessError(
                f"the workflow called activity {name!r}, which the test did not script "
                f"(scripted: {sorted(self.activities)})"
            )
        script = self.activities[name]
        try:
            if callable(script):
                value = script(engine.decode(ph.get_string_value(attempt.encoded_input)))
            else:
                value = script
        except ActivityFailed as failed:
            details = pb.TaskFailureDetails(errorType=failed.error_type, errorMessage=str(failed))
            event = pb.HistoryEvent(
                eventId=-1,
                taskFailed=pb.TaskFailedEvent(
                    taskScheduledId=attempt.task_id, failureDetails=details
                ),
            )
        else:
            event = ph.new_task_completed_event(attempt.task_id, engine.encode(value))
        self._execute([event])


class WorkflowFailed(Exception):
    """A workflow failure the SDK reported without the exception itself."""
