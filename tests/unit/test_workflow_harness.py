"""The harness must catch what the runtime would: non-determinism, hangs, stray waiters."""

import uuid
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import pytest
from dapr.ext.workflow import when_all, when_any

from workflow_harness import HarnessError, WorkflowHarness


def test_replay_catches_a_workflow_that_is_not_deterministic() -> None:
    def sloppy(ctx: Any, _: Any) -> Generator[Any, Any, None]:
        yield ctx.call_activity("send", input={"id": uuid.uuid4().hex})

    h = WorkflowHarness(sloppy, None, activities={"send": None}).start()
    with pytest.raises(AssertionError, match="replay diverged at action 0"):
        h.assert_deterministic()


def test_an_abandoned_waiter_takes_the_next_event_as_in_the_runtime() -> None:
    def naive(ctx: Any, _: Any) -> Generator[Any, Any, Any]:
        yield when_any([ctx.wait_for_external_event("go"), ctx.create_timer(timedelta(hours=1))])
        second = ctx.wait_for_external_event("go")  # the first waiter is still pending
        got = yield when_any([second, ctx.create_timer(timedelta(hours=1))])
        return "received" if got is second else "lost"

    h = WorkflowHarness(naive, None).start()
    h.advance(timedelta(hours=1)).raise_event("go", 1)
    h.run_until_complete()
    assert h.result == "lost"


def test_when_all_and_activity_results() -> None:
    def fan_out(ctx: Any, n: int) -> Generator[Any, Any, int]:
        results = yield when_all([ctx.call_activity("double", input=i) for i in range(n)])
        return sum(results)

    h = WorkflowHarness(fan_out, 4, activities={"double": lambda x: 2 * x}).start()
    assert h.result == 12


def test_unscripted_activity_and_stuck_waits_are_test_bugs() -> None:
    def wf(ctx: Any, _: Any) -> Generator[Any, Any, None]:
        yield ctx.wait_for_external_event("never")

    with pytest.raises(HarnessError, match="waits for events"):
        WorkflowHarness(wf, None).start().run_until_complete()

    def calls(ctx: Any, _: Any) -> Generator[Any, Any, None]:
        yield ctx.call_activity("unknown")

    with pytest.raises(HarnessError, match="did not script"):
        WorkflowHarness(calls, None).start()
