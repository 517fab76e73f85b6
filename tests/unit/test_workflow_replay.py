"""Histories recorded on the real stack replay against today's workflows.

tests/histories/<workflow>/<path>.json were recorded by the e2e tier (RECORD_HISTORIES=<dir>,
docs/testing.md). A change that would break an instance already in flight fails here, in
seconds; each kind of break is proved below with a workflow broken on purpose. The same
recordings check the harness: driven by what Dapr recorded, it writes the history Dapr wrote.
"""

import json
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb
import pytest
from dapr.ext.workflow._durabletask.internal.timer import is_optional_timer_event

from approvals.workflows import APPROVAL_WORKFLOW, approval_workflow
from orders.workflows import (
    ADVANCE_ORDER,
    FULFIL_ORDER,
    LEAN_PATCH,
    ORDER_WORKFLOW,
    PUBLISH_STATUS,
    RECORD_ORDER,
    order_workflow,
)
from workflow_harness import (
    ReplayError,
    WorkflowHarness,
    load_history,
    replay,
    save_history,
)

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
RECORDED = sorted(HISTORIES.glob("*/*.json"))
# Orders recorded since their consecutive steps run as one activity (the `lean` mark) are
# `<path>.lean.json`; `<path>.json` are orders from before, as an upgrade finds them in flight.
LEAN = sorted(HISTORIES.glob(f"{ORDER_WORKFLOW}/*.lean.json"))
WORKFLOWS = {ORDER_WORKFLOW: order_workflow, APPROVAL_WORKFLOW: approval_workflow}
ORDERS = HISTORIES / ORDER_WORKFLOW
Flow = Generator[Any, Any, Any]


def test_every_approval_path_has_a_recorded_history() -> None:
    paths = {"manager_approves", "manager_rejects", "escalated_then_vp_approves", "expired"}
    paths |= {"cancelled_waiting_for_manager", "cancelled_after_escalation"}
    assert {p.stem for p in ORDERS.glob("*.json")} >= paths | {"auto_approved"}
    assert {p.name.removesuffix(".lean.json") for p in LEAN} >= paths | {"auto_approved"}
    reminded = {"escalated_reminded_then_vp_approves", "cancelled_after_escalation_and_reminder"}
    reminded |= {"cancelled_after_escalation_before_reminder", "cancelled_after_reminder"}
    assert {p.stem for p in (HISTORIES / APPROVAL_WORKFLOW).glob("*.json")} >= paths | reminded


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_recorded_history_replays_against_todays_workflow(path: Path) -> None:
    recorded = json.loads(path.read_text())
    replayed = replay(WORKFLOWS[path.parent.name], path)
    assert replayed.status == recorded["status"] == "COMPLETED"
    assert replayed.instance_id == recorded["instance_id"]


class Renaming:
    """A context that calls one activity by another name, as a careless refactor would."""

    def __init__(self, ctx: Any, renames: dict[str, str]) -> None:
        self._ctx, self._renames = ctx, renames

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def call_activity(self, activity: str, **kwargs: Any) -> Any:
        return self._ctx.call_activity(self._renames.get(activity, activity), **kwargs)


def test_an_activity_added_up_front_breaks_every_instance_in_flight() -> None:
    def audited(ctx: Any, inp: Any) -> Flow:
        yield ctx.call_activity("audit", input=inp)
        return (yield from order_workflow(ctx, inp))

    with pytest.raises(ReplayError, match=r"event 2 of 18 \(taskScheduled #1 'publish_order_st"):
        replay(audited, ORDERS / "auto_approved.json", name=ORDER_WORKFLOW)


def test_a_renamed_activity_breaks_the_instances_that_reached_it() -> None:
    def renamed(ctx: Any, inp: Any) -> Flow:
        return (yield from order_workflow(Renaming(ctx, {FULFIL_ORDER: "ship_order"}), inp))

    replay(renamed, ORDERS / "manager_rejects.json", name=ORDER_WORKFLOW)  # never fulfilled
    with pytest.raises(ReplayError, match=r"taskScheduled #\d+ 'fulfil_order'.*ship_order") as e:
        replay(renamed, ORDERS / "manager_approves.json", name=ORDER_WORKFLOW)
    assert e.value.event.taskScheduled.name == FULFIL_ORDER


def test_code_that_ends_sooner_than_the_history_breaks_it() -> None:
    def stops_early(ctx: Any, inp: Any) -> Flow:
        yield next(order_workflow(ctx, inp))
        return "stopped"

    with pytest.raises(ReplayError, match=r"taskScheduled #2 .*the code has already ended"):
        replay(stops_early, ORDERS / "auto_approved.json", name=ORDER_WORKFLOW)


def test_code_that_goes_on_after_the_recorded_end_breaks_it() -> None:
    def notifies(ctx: Any, inp: Any) -> Flow:
        result = yield from order_workflow(ctx, inp)
        yield ctx.call_activity("notify")
        return result

    goes_on = r"ends COMPLETED here, but today's code goes on: .*'notify'"
    with pytest.raises(ReplayError, match=goes_on):
        replay(notifies, ORDERS / "auto_approved.json", name=ORDER_WORKFLOW)


def test_code_that_refuses_a_recorded_input_breaks_it() -> None:
    def stricter(ctx: Any, inp: Any) -> Flow:
        if not inp["order"]["customer_id"].isdigit():
            raise ValueError("customer ids are numeric now")
        return (yield from order_workflow(ctx, inp))

    with pytest.raises(ReplayError, match=r"executionStarted.*raises ValueError: customer ids"):
        replay(stricter, ORDERS / "expired.json", name=ORDER_WORKFLOW)


def test_a_branch_on_the_wall_clock_breaks_the_replay() -> None:
    def clocked(ctx: Any, inp: Any) -> Flow:
        lag = datetime.now(UTC) - ctx.current_utc_datetime.replace(tzinfo=UTC)
        if lag > timedelta(days=1):  # never true while it ran; always when replayed later
            yield ctx.call_activity("late_notice")
        return (yield from order_workflow(ctx, inp))

    with pytest.raises(ReplayError, match=r"event 2 .*late_notice"):
        replay(clocked, ORDERS / "escalated_then_vp_approves.json", name=ORDER_WORKFLOW)


def test_a_changed_input_passes_dapr_s_check_but_not_the_strict_one() -> None:
    class Annotating(Renaming):
        def call_activity(self, activity: str, **kwargs: Any) -> Any:
            if activity == PUBLISH_STATUS:
                kwargs["input"] = {**kwargs["input"], "detail": "new wording"}
            return super().call_activity(activity, **kwargs)

    def reworded(ctx: Any, inp: Any) -> Flow:
        return (yield from order_workflow(Annotating(ctx, {}), inp))

    path = ORDERS / "manager_approves.json"
    assert replay(reworded, path, name=ORDER_WORKFLOW).status == "COMPLETED"
    with pytest.raises(ReplayError, match=r"another input: detail: '1200.00 EUR' recorded"):
        replay(reworded, path, name=ORDER_WORKFLOW, strict=True)


def test_the_history_must_be_of_the_workflow_given() -> None:
    with pytest.raises(ValueError, match="is of workflow 'order_workflow', not 'approval_wo"):
        replay(approval_workflow, ORDERS / "expired.json")


def failing(ctx: Any, _: Any) -> Flow:
    yield ctx.call_activity("check")
    raise RuntimeError("out of stock")


def test_a_saved_history_loads_back_and_a_failed_run_replays_as_failed(tmp_path: Path) -> None:
    h = WorkflowHarness(failing, {"n": 1}, activities={"check": None})
    with pytest.raises(RuntimeError):
        h.start()
    path = save_history(h.history, tmp_path / "failing" / "one.json")
    assert load_history(path) == h.history
    assert json.loads(path.read_text())["status"] == "FAILED"
    assert replay(failing, path, strict=True).status == "FAILED"

    def fixed(ctx: Any, _: Any) -> Flow:
        yield ctx.call_activity("check")

    with pytest.raises(ReplayError, match="the history ends FAILED, today's code COMPLETED"):
        replay(fixed, path, name="failing")


def replaying(results: list[Any]) -> Any:
    """A scripted activity that returns the recorded results, one per call."""
    left = iter(results)
    return lambda _: next(left)


def test_a_step_that_failed_with_more_events_in_it_replays_as_recorded() -> None:
    h = WorkflowHarness(failing, activities={"check": None})
    with pytest.raises(RuntimeError):
        h.start()
    # Dapr may hand the worker several events in one step; those after the failure stay unread.
    unread = pb.HistoryEvent(eventId=-1, eventRaised=pb.EventRaisedEvent(name="late"))
    events = [*h.history[:-1], unread, h.history[-1]]
    assert replay(failing, events).status == "FAILED"


def redriven(path: Path) -> WorkflowHarness:
    """The harness, driven by what Dapr recorded: its input, events, timers and results."""
    events = load_history(path)
    start = next(e.executionStarted for e in events if e.HasField("executionStarted"))
    names = {e.eventId: e.taskScheduled.name for e in events if e.HasField("taskScheduled")}
    results: dict[str, list[Any]] = {}
    for e in events:
        if e.HasField("taskCompleted"):
            value = e.taskCompleted.result.value
            results.setdefault(names[e.taskCompleted.taskScheduledId], []).append(
                json.loads(value) if value else None
            )
    h = WorkflowHarness(
        WORKFLOWS[start.name],
        json.loads(start.input.value),
        activities={name: replaying(rs) for name, rs in results.items()},
        instance_id=start.workflowInstance.instanceId,
        now=events[0].timestamp.ToDatetime(tzinfo=UTC),
    ).start()
    for e in events:
        if e.HasField("workflowStarted"):
            step_began = e.timestamp.ToDatetime(tzinfo=UTC)
        elif e.HasField("eventRaised"):
            h.advance(to=max(h.now, step_began))
            h.raise_event(e.eventRaised.name, json.loads(e.eventRaised.input.value))
        elif e.HasField("timerFired"):
            h.advance(to=e.timerFired.fireAt.ToDatetime(tzinfo=UTC))
    return h


def shape(events: list[Any]) -> list[tuple[str, int, str]]:
    return [
        (str(e.WhichOneof("eventType")), e.eventId, getattr(e.taskScheduled, "name", ""))
        for e in events
    ]


def as_replayed_against(made: list[Any], recorded: list[Any]) -> list[tuple[str, int, str]]:
    """`made` as the SDK reads it against an older recording: an indefinite event wait that
    today's workflow adds (an "optional timer") and the recording lacks is dropped, and the
    ids after it shift down, as on the replay of an instance started before the wait existed."""
    want, got, shift = shape(recorded), [], 0
    for event, (kind, event_id, name) in zip(made, shape(made), strict=True):
        entry = (kind, event_id - shift if event_id >= 0 else event_id, name)
        at = len(got)
        if is_optional_timer_event(event) and (at >= len(want) or want[at] != entry):
            shift += 1
            continue
        got.append(entry)
    return got


def marks(events: list[Any]) -> list[str]:
    return [p for e in events for p in e.workflowStarted.version.patches]


def todays(path: Path) -> bool:
    """Recorded by today's workflow: every approval, and the orders with the lean mark."""
    return path.parent.name != ORDER_WORKFLOW or LEAN_PATCH in marks(load_history(path))


@pytest.mark.parametrize(
    "path", [p for p in RECORDED if todays(p)], ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_the_harness_writes_the_history_dapr_wrote(path: Path) -> None:
    recorded = load_history(path)
    h = redriven(path)
    assert as_replayed_against(h.history, recorded) == shape(recorded)
    # Times differ by milliseconds: the harness fires a timer at its time, Dapr a bit later.
    ending = json.loads(recorded[-1].executionCompleted.result.value)
    keys = ("status", "outcome", "decided_by", "reason", "tier", "stages")
    assert {k: h.result.get(k) for k in keys} == {k: ending.get(k) for k in keys}


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(HISTORIES.glob("*/cancelled_*.json")) if todays(p)],
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_a_recording_of_todays_workflows_needs_no_allowance(path: Path) -> None:
    """Recorded after both workflows began to take the cancel event (versioned with
    `ctx.is_patched`): the harness writes them exactly, optional timers and marks included."""
    recorded = load_history(path)
    assert any(e.eventRaised.name == "cancel" for e in recorded)
    h = redriven(path)
    assert shape(h.history) == shape(recorded)
    lean = [LEAN_PATCH] if path.parent.name == ORDER_WORKFLOW else []
    assert marks(h.history) == marks(recorded) == [*lean, "cancel"]


def test_orders_from_before_the_lean_release_replay_one_activity_per_step() -> None:
    """Every order recording without the mark replays (above) the way it ran: a step per
    activity, no advance_order; and every lean one runs its steps as advance_order only."""
    before = [p for p in RECORDED if p.parent.name == ORDER_WORKFLOW and not todays(p)]
    assert before and LEAN and all(todays(p) for p in LEAN)
    for path in before:
        names = {e.taskScheduled.name for e in load_history(path) if e.HasField("taskScheduled")}
        assert PUBLISH_STATUS in names and ADVANCE_ORDER not in names
    for path in LEAN:
        names = {e.taskScheduled.name for e in load_history(path) if e.HasField("taskScheduled")}
        assert names <= {ADVANCE_ORDER, RECORD_ORDER}, path.name


def test_an_instance_waiting_since_before_cancellation_has_no_cancel_waiter() -> None:
    """An order that was waiting when cancellation came replays without the mark and so
    without the waiter (POST /orders/{id}/cancel refuses it: terminate that one)."""
    events = load_history(ORDERS / "escalation_followed_then_vp_approves.json")
    waiting = events[: next(i for i, e in enumerate(events) if e.HasField("eventRaised"))]
    assert replay(order_workflow, waiting).status == "RUNNING"
    assert not marks(waiting)
    assert "cancel" not in {e.timerCreated.externalEvent.name for e in waiting}
