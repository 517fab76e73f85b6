"""A deterministic, in-process harness for Dapr workflow generator functions.

It runs the real workflow function against a context that speaks the parts of
DaprWorkflowContext workflows use, built on the SDK's own task objects (durabletask
CompletableTask / TimerTask), so the SDK's real `when_any` / `when_all` compose them and its
rules apply (e.g. a pending task may belong to one pending composite only). Time is virtual:
it stands still while the workflow runs and jumps to the next timer when asked.

    h = WorkflowHarness(order_workflow, inp, activities={"request_approval": None})
    h.start()
    h.raise_event("approval_outcome", {...})     # delivered now
    h.advance(timedelta(days=3))                 # fires every timer due in the next 3 days
    h.run_until_complete()                       # or: keep firing the next timer until done
    assert h.result["status"] == "completed"
    h.assert_deterministic()                     # replays and compares every action

Scripted activities: a value is returned as the result; a callable is called with the input
(raise ActivityFailed or any exception in it to fail the task); a missing name fails the test.
Retry policies are honoured by attempt count (each attempt is in `calls`; no virtual time passes
between attempts). What it does not model: child workflows, continue_as_new, suspension, and the
runtime's serialization (inputs and results are passed as Python objects: pass JSON-ready ones).
See docs/testing.md.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb
from dapr.ext.workflow._durabletask import task as dt

DEFAULT_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class ActivityFailed(Exception):
    """Raise from a scripted activity to make its task fail."""


class HarnessError(AssertionError):
    """The harness was driven in a way the workflow cannot follow (a test bug)."""


@dataclass(frozen=True)
class Call:
    """One activity call the workflow made."""

    name: str
    input: Any
    at: datetime


@dataclass
class _Timer:
    fire_at: datetime
    task: dt.TimerTask[Any]


@dataclass
class _Context:
    """The slice of DaprWorkflowContext that workflows use."""

    instance_id: str
    harness: WorkflowHarness
    is_replaying: bool = False
    custom_status: str | None = None

    @property
    def current_utc_datetime(self) -> datetime:
        # durabletask hands workflows a naive UTC datetime; so do we.
        return self.harness.now.astimezone(UTC).replace(tzinfo=None)

    def set_custom_status(self, status: str) -> None:
        self.custom_status = status
        self.harness.statuses.append(status)

    def call_activity(
        self,
        activity: Any,
        *,
        input: Any = None,
        retry_policy: Any = None,
        app_id: str | None = None,
    ) -> dt.Task[Any]:
        name = activity if isinstance(activity, str) else getattr(activity, "__name__", "?")
        attempts = getattr(retry_policy, "max_number_of_attempts", 1) or 1
        return self.harness._call(name, input, attempts)

    def create_timer(self, fire_at: datetime | timedelta) -> dt.Task[Any]:
        return self.harness._timer(fire_at)

    def wait_for_external_event(self, name: str, *, timeout: Any = None) -> dt.Task[Any]:
        if timeout is not None:
            raise HarnessError(
                "wait_for_external_event(timeout=...) is not modelled; "
                "race the event against create_timer with when_any"
            )
        return self.harness._wait(name)


@dataclass
class WorkflowHarness:
    """Drive one workflow instance step by step on a virtual clock."""

    workflow: Callable[..., Generator[Any, Any, Any]]
    input: Any
    activities: dict[str, Any] = field(default_factory=dict)
    instance_id: str = "wf-test"
    now: datetime = DEFAULT_START
    calls: list[Call] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    actions: list[tuple[Any, ...]] = field(default_factory=list)
    result: Any = None
    failure: BaseException | None = None
    done: bool = False

    def __post_init__(self) -> None:
        self._ctx = _Context(self.instance_id, self)
        self._gen: Generator[Any, Any, Any] | None = None
        self._waiting_on: dt.Task[Any] | None = None
        self._timers: list[_Timer] = []
        self._pending_events: dict[str, list[dt.CompletableTask[Any]]] = {}
        self._buffered_events: dict[str, list[Any]] = {}
        self._stimuli: list[tuple[Any, ...]] = []
        self._replay_results: list[tuple[str, Any]] | None = None
        self._results_log: list[tuple[str, Any]] = []
        self._started_at = self.now

    # ---- driving -----------------------------------------------------------------------

    def start(self) -> WorkflowHarness:
        """Run the workflow until it waits for an event or a timer (or ends)."""
        self._gen = self.workflow(self._ctx, copy.deepcopy(self.input))
        self._resume(None)
        return self

    def raise_event(self, name: str, data: Any = None) -> WorkflowHarness:
        """Deliver an external event now: to the oldest waiter, else buffered (like Dapr)."""
        self._stimuli.append(("event", name, copy.deepcopy(data), self.now))
        key = name.casefold()
        waiters = self._pending_events.get(key)
        if waiters:
            waiters.pop(0).complete(copy.deepcopy(data))
        else:
            self._buffered_events.setdefault(key, []).append(copy.deepcopy(data))
        self._pump()
        return self

    def advance(
        self, by: timedelta | None = None, *, to: datetime | None = None
    ) -> WorkflowHarness:
        """Move the clock forward, firing every timer due on the way, in order."""
        target = to if to is not None else self.now + (by or timedelta(0))
        if target < self.now:
            raise HarnessError("time does not go backwards")
        self._stimuli.append(("advance", target))
        while not self.done:
            due = sorted(
                (t for t in self._timers if not t.task.is_complete), key=lambda t: t.fire_at
            )
            if not due or due[0].fire_at > target:
                break
            self.now = max(self.now, due[0].fire_at)
            due[0].task.complete(None)
            self._pump()
        self.now = target
        return self

    def run_until_complete(self, limit: int = 1000) -> Any:
        """Fire the next timer until the workflow ends; fail if it waits on events only."""
        for _ in range(limit):
            if self.done:
                break
            nxt = self.next_timer
            if nxt is None:
                raise HarnessError(
                    f"the workflow waits for events {sorted(self.waiting_for)} and no timer "
                    "is pending: raise an event or check the workflow"
                )
            self.advance(to=nxt)
        if self.failure is not None:
            raise self.failure
        return self.result

    # ---- what a test looks at ----------------------------------------------------------

    @property
    def next_timer(self) -> datetime | None:
        pending = [t.fire_at for t in self._timers if not t.task.is_complete]
        return min(pending) if pending else None

    @property
    def waiting_for(self) -> set[str]:
        return {name for name, tasks in self._pending_events.items() if tasks}

    @property
    def custom_status(self) -> str | None:
        return self._ctx.custom_status

    def calls_to(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def assert_deterministic(self) -> None:
        """Replay the same inputs with is_replaying=True; every action must repeat exactly."""
        replay = WorkflowHarness(
            self.workflow, self.input, instance_id=self.instance_id, now=self._started_at
        )
        replay._replay_results = list(self._results_log)
        replay._ctx.is_replaying = True
        replay.start()
        for stimulus in self._stimuli:
            if stimulus[0] == "event":
                _, name, data, at = stimulus
                replay.advance(to=at)
                replay.raise_event(name, data)
            else:
                replay.advance(to=stimulus[1])
        if replay.actions != self.actions:
            for i, (a, b) in enumerate(zip(self.actions, replay.actions, strict=False)):
                if a != b:
                    raise AssertionError(f"replay diverged at action {i}: {a!r} != {b!r}")
            raise AssertionError(
                f"replay made {len(replay.actions)} actions, the run {len(self.actions)}"
            )

    # ---- the context's side ------------------------------------------------------------

    def _call(self, name: str, input: Any, attempts: int = 1) -> dt.Task[Any]:
        self.actions.append(("activity", name, copy.deepcopy(input)))
        task: dt.CompletableTask[Any] = dt.CompletableTask()
        if self._replay_results is not None:
            kind, value = self._replay_results.pop(0)
        else:
            for _ in range(attempts):  # the retry policy's attempts; no time passes between
                self.calls.append(Call(name, copy.deepcopy(input), self.now))
                kind, value = self._run_activity(name, input)
                if kind == "ok":
                    break
            self._results_log.append((kind, value))
        if kind == "ok":
            task.complete(copy.deepcopy(value))
        else:
            details = pb.TaskFailureDetails(errorType=kind, errorMessage=str(value))
            task.fail(f"activity {name} failed: {value}", details)
        return task

    def _run_activity(self, name: str, input: Any) -> tuple[str, Any]:
        if name not in self.activities:
            raise HarnessError(
                f"the workflow called activity {name!r}, which the test did "
                f"not script (scripted: {sorted(self.activities)})"
            )
        script = self.activities[name]
        if not callable(script):
            return "ok", script
        try:
            return "ok", script(copy.deepcopy(input))
        except Exception as exc:
            return type(exc).__name__, str(exc)

    def _timer(self, fire_at: datetime | timedelta) -> dt.Task[Any]:
        if isinstance(fire_at, timedelta):
            at = self.now + fire_at
        else:
            at = fire_at if fire_at.tzinfo else fire_at.replace(tzinfo=UTC)
        self.actions.append(("timer", at.isoformat()))
        task: dt.TimerTask[Any] = dt.TimerTask()
        if at <= self.now:
            task.complete(None)
        else:
            self._timers.append(_Timer(at, task))
        return task

    def _wait(self, name: str) -> dt.Task[Any]:
        self.actions.append(("wait", name))
        key = name.casefold()
        task: dt.CompletableTask[Any] = dt.CompletableTask()
        buffered = self._buffered_events.get(key)
        if buffered:
            task.complete(buffered.pop(0))
        else:
            self._pending_events.setdefault(key, []).append(task)
        return task

    def _resume(self, value: Any, error: BaseException | None = None) -> None:
        assert self._gen is not None
        try:
            nxt = self._gen.throw(error) if error is not None else self._gen.send(value)
        except StopIteration as stop:
            self.done, self.result = True, stop.value
            return
        except HarnessError:
            raise
        except Exception as exc:  # the workflow failed: Dapr would mark it FAILED
            self.done, self.failure = True, exc
            return
        if not isinstance(nxt, dt.Task):
            raise HarnessError(f"the workflow yielded {nxt!r}, which is not a task")
        self._waiting_on = nxt
        self._pump()

    def _pump(self) -> None:
        while not self.done and self._waiting_on is not None and self._waiting_on.is_complete:
            current, self._waiting_on = self._waiting_on, None
            if current.is_failed:
                self._resume(None, current.get_exception())
            else:
                self._resume(current.get_result())
