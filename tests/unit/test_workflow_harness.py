"""The harness must catch what the runtime would, and let no mistake pass silently.

Each check is proved against a workflow (or a test script) that is broken on purpose.
"""

import datetime as dt
import time
import uuid
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from dapr.ext.workflow import RetryPolicy, TaskFailedError, when_all, when_any
from dapr.ext.workflow._durabletask.task import NonDeterminismError
from pydantic import BaseModel

from workflow_harness import (
    DEFAULT_START,
    ActivityFailed,
    HarnessError,
    ReplayError,
    WorkflowHarness,
)

T0 = DEFAULT_START
Flow = Generator[Any, Any, Any]
RETRY = RetryPolicy(
    first_retry_interval=timedelta(seconds=1),
    max_number_of_attempts=4,
    backoff_coefficient=2.0,
    max_retry_interval=timedelta(seconds=3),
)


def one_call(ctx: Any, inp: Any) -> Flow:
    return (yield ctx.call_activity("act", input=inp, retry_policy=RETRY))


def always_fails(_: Any) -> None:
    raise ActivityFailed("no luck")


# ---- failures are raised where they happen ---------------------------------------------


def test_a_workflow_failure_raises_at_the_step_where_it_happens() -> None:
    def breaks_on_the_event(ctx: Any, _: Any) -> Flow:
        yield ctx.wait_for_external_event("go")
        yield ctx.call_activity("publish")
        raise ValueError("broken after publishing")

    h = WorkflowHarness(breaks_on_the_event, activities={"publish": None}).start()
    assert h.status == "RUNNING"
    with pytest.raises(ValueError, match="broken after publishing"):
        h.raise_event("go")
    assert h.status == "FAILED" and isinstance(h.failure, ValueError) and h.done
    assert len(h.calls_to("publish")) == 1
    h.assert_deterministic()  # the replay fails the same way


def test_a_failed_activity_fails_the_workflow_in_the_test() -> None:
    h = WorkflowHarness(one_call, 1, activities={"act": always_fails})
    with pytest.raises(TaskFailedError, match="no luck"):
        h.start().run_until_complete()
    assert [c.attempt for c in h.calls] == [1, 2, 3, 4]


# ---- mistakes in test code are test errors ---------------------------------------------


def test_an_assert_in_a_scripted_activity_fails_the_test_and_is_not_retried() -> None:
    def expects_two(inp: int) -> int:
        assert inp == 2, "the test expected 2"
        return inp

    h = WorkflowHarness(one_call, 1, activities={"act": expects_two})
    with pytest.raises(AssertionError, match="the test expected 2"):
        h.start()
    assert len(h.calls) == 1 and h.failure is None


def test_any_exception_but_activity_failed_in_a_script_is_a_test_error() -> None:
    h = WorkflowHarness(one_call, {"a": 1}, activities={"act": lambda inp: inp["missing"]})
    with pytest.raises(KeyError, match="missing"):
        h.start()
    assert h.failure is None


@pytest.mark.parametrize(
    ("call", "method"),
    [
        (lambda ctx: ctx.call_child_workflow("child"), "call_child_workflow"),
        (lambda ctx: ctx.continue_as_new({"n": 2}), "continue_as_new"),
        (lambda ctx: ctx.call_sub_orchestrator("child"), "call_sub_orchestrator"),
    ],
)
def test_an_unmodelled_context_call_is_a_harness_error_naming_it(call: Any, method: str) -> None:
    def uses(ctx: Any, _: Any) -> Flow:
        yield ctx.call_activity("first")
        return (yield call(ctx))

    with pytest.raises(HarnessError, match=f"{method}.*does not model"):
        WorkflowHarness(uses, activities={"first": None}).start()


def test_an_unmodelled_call_fails_the_test_even_when_the_workflow_swallows_the_error() -> None:
    def swallows(ctx: Any, _: Any) -> Flow:
        try:
            yield ctx.call_child_workflow("child")
        except Exception:
            yield ctx.call_activity("fallback")

    with pytest.raises(HarnessError, match="call_child_workflow"):
        WorkflowHarness(swallows, activities={"fallback": None}).start()


# ---- every payload goes through the SDK's JSON encoding --------------------------------


def test_an_activity_input_that_is_not_json_fails_the_workflow() -> None:
    class Status(BaseModel):
        at: datetime

    def dumps_without_json_mode(ctx: Any, _: Any) -> Flow:
        yield ctx.call_activity("publish", input=Status(at=T0).model_dump())

    h = WorkflowHarness(dumps_without_json_mode, activities={"publish": None})
    with pytest.raises(TypeError, match="datetime is not JSON serializable"):
        h.start()
    assert h.status == "FAILED"


def test_inputs_results_and_events_arrive_as_json_decodes_them() -> None:
    class Receipt(BaseModel):
        total: Decimal

    def shapes(ctx: Any, inp: Any) -> Flow:
        got = yield ctx.call_activity("pay", input=inp)
        event = yield ctx.wait_for_external_event("note")
        return {"inp": inp, "got": got, "event": event}

    h = WorkflowHarness(shapes, (1, 2), activities={"pay": lambda _: Receipt(total=Decimal("9.5"))})
    h.start().raise_event("note", ("a", "b"))
    assert h.calls[0].input == [1, 2]  # a tuple arrives as a list, as on Dapr
    assert h.result == {"inp": [1, 2], "got": {"total": "9.5"}, "event": ["a", "b"]}


def test_an_event_payload_that_is_not_json_is_refused_like_the_client_does() -> None:
    def waits(ctx: Any, _: Any) -> Flow:
        return (yield ctx.wait_for_external_event("note"))

    h = WorkflowHarness(waits).start()
    with pytest.raises(TypeError, match="Decimal is not JSON serializable"):
        h.raise_event("note", {"amount": Decimal("1.00")})


def test_a_result_that_is_not_json_fails_the_test() -> None:
    def returns_a_datetime(ctx: Any, _: Any) -> Flow:
        yield ctx.call_activity("act")
        return {"at": ctx.current_utc_datetime}

    with pytest.raises(TypeError, match="datetime is not JSON serializable"):
        WorkflowHarness(returns_a_datetime, activities={"act": None}).start()


def test_a_custom_status_is_encoded_as_the_sdk_encodes_it() -> None:
    def reports(ctx: Any, _: Any) -> Flow:
        ctx.set_custom_status({"stage": 1})
        yield ctx.call_activity("act")

    with pytest.warns(DeprecationWarning, match="set_custom_status"):
        h = WorkflowHarness(reports, activities={"act": None}).start()
    assert h.custom_status == '{"stage": 1}' and h.statuses == ['{"stage": 1}']


# ---- activities can be held open --------------------------------------------------------


def test_a_timer_fires_and_an_event_arrives_while_a_held_activity_runs() -> None:
    def races(ctx: Any, _: Any) -> Flow:
        slow = ctx.call_activity("slow")
        winner = yield when_any([slow, ctx.create_timer(timedelta(hours=1))])
        note = yield ctx.wait_for_external_event("note")
        return {"timed_out": winner is not slow, "note": note}

    h = WorkflowHarness(races, activities={"slow": "late"}).hold("slow").start()
    assert [c.name for c in h.running] == ["slow"] and h.next_timer == T0 + timedelta(hours=1)
    h.advance(timedelta(hours=1)).raise_event("note", "meanwhile")
    assert h.result == {"timed_out": True, "note": "meanwhile"}
    h.assert_deterministic()


def test_an_event_raised_while_an_activity_runs_is_buffered_until_the_wait() -> None:
    def then_waits(ctx: Any, _: Any) -> Flow:
        yield ctx.call_activity("slow")
        return (yield ctx.wait_for_external_event("note"))

    h = WorkflowHarness(then_waits, activities={"slow": None}).hold("slow").start()
    h.raise_event("note", "early")
    assert not h.done and not h.waiting_for
    assert h.release("slow").result == "early"
    with pytest.raises(HarnessError, match="no held activity"):
        h.release()


def test_running_to_the_end_with_a_held_activity_and_no_timer_is_a_test_bug() -> None:
    h = WorkflowHarness(one_call, 1, activities={"act": 1}).hold("act").start()
    with pytest.raises(HarnessError, match=r"held activities \['act'\]"):
        h.run_until_complete()


# ---- retries follow the SDK's policy ----------------------------------------------------


def test_retries_wait_on_durable_back_off_timers() -> None:
    h = WorkflowHarness(one_call, 1, activities={"act": always_fails}).start()
    for expected_next in (1, 3):  # 1 s, then 2 s
        assert h.next_timer == T0 + timedelta(seconds=expected_next)
        h.advance(to=h.next_timer)
    assert h.next_timer == T0 + timedelta(seconds=6)  # 4 s, capped at the policy's 3 s
    with pytest.raises(TaskFailedError):
        h.advance(timedelta(seconds=3))  # the fourth attempt is the last
    assert [(c.attempt, c.at - T0) for c in h.calls] == [
        (1, timedelta(0)),
        (2, timedelta(seconds=1)),
        (3, timedelta(seconds=3)),
        (4, timedelta(seconds=6)),
    ]


def test_an_event_can_win_against_an_activity_waiting_out_its_back_off() -> None:
    def races(ctx: Any, _: Any) -> Flow:
        call = ctx.call_activity("act", retry_policy=RETRY)
        winner = yield when_any([call, ctx.wait_for_external_event("cancel")])
        return "cancelled" if winner is not call else "done"

    h = WorkflowHarness(races, activities={"act": always_fails}).start()
    assert h.next_timer == T0 + timedelta(seconds=1)
    assert h.raise_event("cancel").result == "cancelled" and len(h.calls) == 1


def test_a_non_retryable_error_is_not_retried() -> None:
    def declined(_: Any) -> None:
        raise ActivityFailed("card declined", retryable=False)

    with pytest.raises(TaskFailedError, match="card declined"):
        WorkflowHarness(one_call, 1, activities={"act": declined}).start()


def test_the_retry_timeout_ends_the_retries() -> None:
    def patient(ctx: Any, _: Any) -> Flow:
        policy = RetryPolicy(
            first_retry_interval=timedelta(seconds=10),
            max_number_of_attempts=10,
            retry_timeout=timedelta(seconds=15),
        )
        yield ctx.call_activity("act", retry_policy=policy)

    h = WorkflowHarness(patient, activities={"act": always_fails}).start()
    with pytest.raises(TaskFailedError):
        h.run_until_complete()
    assert len(h.calls) == 2  # a third attempt would start after the 15 s


# ---- the instance must exist ------------------------------------------------------------


def test_raising_into_an_instance_that_does_not_exist_is_an_error() -> None:
    h = WorkflowHarness(one_call, 1, activities={"act": 1})
    with pytest.raises(HarnessError, match="no workflow instance 'wf-test' exists"):
        h.raise_event("go", 1)


def test_a_finished_instance_drops_events_as_dapr_does() -> None:
    h = WorkflowHarness(one_call, 1, activities={"act": 1}).start()
    assert h.raise_event("late", {"x": 1}).dropped_events == [("late", {"x": 1})]
    assert h.result == 1


# ---- determinism --------------------------------------------------------------------------


def test_replay_catches_an_input_that_is_not_deterministic() -> None:
    def sloppy(ctx: Any, _: Any) -> Flow:
        yield ctx.call_activity("send", input={"id": uuid.uuid4().hex})

    h = WorkflowHarness(sloppy, activities={"send": None}).start()
    with pytest.raises(ReplayError, match=r"taskScheduled #1 'send'.*another input: id:"):
        h.assert_deterministic()


def test_each_step_replays_the_history_as_the_worker_does() -> None:
    def only_the_first_time(ctx: Any, _: Any) -> Flow:
        if not ctx.is_replaying:
            yield ctx.call_activity("side_effect")
        return (yield ctx.wait_for_external_event("go"))

    h = WorkflowHarness(only_the_first_time, activities={"side_effect": None})
    # The activity's result is the next step: replaying the first one, the code skips the call.
    with pytest.raises(NonDeterminismError, match="called call_activity with ID=1"):
        h.start()


def by_hour(ctx: Any, _: Any) -> Flow:
    yield ctx.call_activity("morning" if datetime.now(UTC).hour < 12 else "evening")


def by_epoch(ctx: Any, _: Any) -> Flow:
    late = time.time() > (ctx.current_utc_datetime.replace(tzinfo=UTC).timestamp() + 3600)
    yield ctx.call_activity("evening" if late else "morning")


def by_module(ctx: Any, _: Any) -> Flow:
    yield ctx.call_activity("evening" if dt.date.today().year > T0.year else "morning")


def by_timer(ctx: Any, _: Any) -> Flow:
    yield ctx.create_timer(datetime.now(UTC) + timedelta(hours=1))


@pytest.mark.parametrize("workflow", [by_hour, by_epoch, by_module, by_timer])
def test_a_workflow_that_reads_the_wall_clock_fails_the_determinism_check(workflow: Any) -> None:
    h = WorkflowHarness(workflow, activities={"morning": None, "evening": None}).start()
    h.run_until_complete()  # the run alone cannot tell: the wall clock reads as the workflow's
    assert h.status == "COMPLETED"
    with pytest.raises(ReplayError, match="diverged at event"):
        h.assert_deterministic()


def test_the_harness_hands_workflows_the_wall_clock_of_their_own_time() -> None:
    seen: list[Any] = []

    def looks(ctx: Any, _: Any) -> Flow:
        seen.append((datetime.now(UTC), time.time(), isinstance(datetime.now(), datetime)))
        yield ctx.create_timer(timedelta(days=1))

    WorkflowHarness(looks).start().run_until_complete()
    assert seen[0] == (T0, T0.timestamp(), True)
    assert seen[-1][0] == T0 + timedelta(days=1)
    assert datetime.now(UTC) != T0 and datetime is dt.datetime  # restored afterwards


# ---- the SDK's composition and event rules ----------------------------------------------


def test_an_abandoned_waiter_takes_the_next_event_as_in_the_runtime() -> None:
    def naive(ctx: Any, _: Any) -> Flow:
        yield when_any([ctx.wait_for_external_event("go"), ctx.create_timer(timedelta(hours=1))])
        second = ctx.wait_for_external_event("go")  # the first waiter is still pending
        got = yield when_any([second, ctx.create_timer(timedelta(hours=1))])
        return "received" if got is second else "lost"

    h = WorkflowHarness(naive).start()
    h.advance(timedelta(hours=1)).raise_event("go", 1)
    h.run_until_complete()
    assert h.result == "lost"


def test_when_all_and_activity_results() -> None:
    def fan_out(ctx: Any, n: int) -> Flow:
        results = yield when_all([ctx.call_activity("double", input=i) for i in range(n)])
        return sum(results)

    h = WorkflowHarness(fan_out, 4, activities={"double": lambda x: 2 * x}).start()
    assert h.result == 12
    h.assert_deterministic()


def test_an_event_wait_with_a_timeout_times_out_on_the_virtual_clock() -> None:
    def impatient(ctx: Any, _: Any) -> Flow:
        try:
            return (yield ctx.wait_for_external_event("go", timeout=timedelta(hours=2)))
        except TimeoutError:
            return "gave up"

    h = WorkflowHarness(impatient).start()
    assert h.next_timer == T0 + timedelta(hours=2)
    assert h.run_until_complete() == "gave up" and h.now == T0 + timedelta(hours=2)
    assert WorkflowHarness(impatient).start().raise_event("go", "now").result == "now"


def test_unscripted_activity_and_stuck_waits_are_test_bugs() -> None:
    def wf(ctx: Any, _: Any) -> Flow:
        yield ctx.wait_for_external_event("never")

    with pytest.raises(HarnessError, match="waits for events"):
        WorkflowHarness(wf).start().run_until_complete()

    def calls(ctx: Any, _: Any) -> Flow:
        yield ctx.call_activity("unknown")

    with pytest.raises(HarnessError, match="did not script"):
        WorkflowHarness(calls).start()
