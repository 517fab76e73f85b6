"""Why is it stuck? The diagnosis read from real histories: recorded on Dapr, or written by the
harness as Dapr writes them, with the situations made by driving the real workflow."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from control.diagnosis import Context, belongs, diagnose, resembles, stuck_because
from control.instances import Entry
from control.views import in_time_order
from orders.workflows import ADVANCE_ORDER, APPROVAL_OUTCOME_EVENT, PUBLISH_STATUS
from plumbing.gateway import InstanceState
from plumbing.history import history_row
from tests.unit.test_order_workflow import harness, outcome
from workflow_harness import ActivityFailed, load_history

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
ENGINE = {"sidecar": "ok", "workflow_workers": 1, "actor_runtime": "RUNNING"}


def rows_of(events: list[Any]) -> list[dict[str, Any]]:
    return in_time_order([history_row(e) for e in events])


def state(status: str = "RUNNING", iid: str = "order-o-1") -> InstanceState:
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    return InstanceState(iid, "order_workflow", status, at, at, None, None, None, None)


def context(rows: list[dict[str, Any]], now: datetime, **over: Any) -> Context:
    base = Context(
        state=state(),
        history=rows,
        business_id="o-1",
        dead_letters=[],
        engine=ENGINE,
        deadline=None,
        now=now,
    )
    return replace(base, **over)


def waiting_order() -> Any:
    """An order waiting for its manager, as the harness (and Dapr) records it."""
    return harness("1200.00").start()


def test_a_waiting_order_waits_for_its_events_and_the_backstop() -> None:
    h = waiting_order()
    found = diagnose(context(rows_of(h.history), h.now))
    assert found["waiting_for"]["events"] == ["approval_outcome", "approval_stage", "cancel"]
    (backstop,) = found["waiting_for"]["timers"]
    assert backstop["kind"] == "timer" and not backstop["overdue"]
    assert backstop["fire_at"] == "2026-01-15T09:00:00Z"  # the 240 h backstop
    assert found["summary"] == (
        "it waits for the events approval_outcome, approval_stage, cancel, "
        "or the timer due at 2026-01-15T09:00:00Z"
    )
    assert found["unconsumed_events"] == [] and found["activities"]["running"] == []


def test_a_misspelled_event_is_named_with_the_wait_it_was_meant_for() -> None:
    h = waiting_order()
    h.raise_event("approval-outcome", {"outcome": "approved"})  # the hyphen strands it
    assert not h.done
    found = diagnose(context(rows_of(h.history), h.now))
    (stranded,) = found["unconsumed_events"]
    assert stranded["name"] == "approval-outcome" and stranded["resembles"] == "approval_outcome"
    assert found["summary"].startswith("event 'approval-outcome' arrived at 2026-01-05T09:00:00Z")
    assert found["summary"].endswith(
        "it waits for 'approval_outcome', which differs only in spelling"
    )
    assert "approval_outcome" in found["waiting_for"]["events"]


def test_an_event_differing_only_in_case_is_taken_as_the_sdk_matches_case_insensitively() -> None:
    h = waiting_order()
    h.raise_event("Approval_Outcome", outcome("rejected", tier="manager"))
    assert h.done and h.result["status"] == "rejected"
    found = diagnose(context(rows_of(h.history), h.now, state=state("COMPLETED")))
    assert found["unconsumed_events"] == [] and found["summary"].startswith("it has ended")


def test_an_unknown_event_says_what_the_workflow_waits_for_instead() -> None:
    h = waiting_order()
    h.raise_event("shipment_ready", {"x": 1})
    (stranded,) = diagnose(context(rows_of(h.history), h.now))["unconsumed_events"]
    assert stranded["resembles"] is None
    found = diagnose(context(rows_of(h.history), h.now))
    assert "nothing waits for that name (it waits for approval_outcome" in found["summary"]


def test_a_failing_activity_shows_its_failures_and_the_next_attempt() -> None:
    def flaky(_: Any) -> None:
        raise ActivityFailed("pub/sub down")

    h = harness("1200.00")
    h.activities[PUBLISH_STATUS] = flaky
    h.start()
    h.advance(timedelta(seconds=1))  # the first back-off: a second attempt fails too
    found = diagnose(context(rows_of(h.history), h.now))
    failures = found["activities"]["failures"]
    assert [(f["name"], f["attempt"], f["failure"]) for f in failures] == [
        (ADVANCE_ORDER, 1, "pub/sub down"),
        (ADVANCE_ORDER, 2, "pub/sub down"),
    ]
    (retry,) = found["waiting_for"]["timers"]
    assert retry["kind"] == "retry" and retry["fire_at"] == "2026-01-05T09:00:03Z"
    assert found["summary"] == (
        "activity 'advance_order' failed (attempt 2): pub/sub down; "
        "the next attempt is due at 2026-01-05T09:00:03Z"
    )


def test_a_held_activity_is_running_and_an_overdue_timer_points_at_the_scheduler() -> None:
    h = harness("1200.00").hold(ADVANCE_ORDER).start()
    found = diagnose(context(rows_of(h.history), h.now))
    assert found["activities"]["running"] == [
        {"name": ADVANCE_ORDER, "since": "2026-01-05T09:00:00Z"}
    ]
    w = waiting_order()
    late = w.now + timedelta(days=11)  # past the backstop, which has not fired
    found = diagnose(context(rows_of(w.history), late, deadline=w.now + timedelta(days=10)))
    assert found["waiting_for"]["timers"][0]["overdue"]
    assert any("has not fired: is the scheduler up?" in f for f in found["findings"])
    assert found["past_deadline"] and any("past its deadline" in f for f in found["findings"])
    assert found["quiet_for_s"] == 11 * 86400


@pytest.mark.parametrize(
    ("status", "engine", "first"),
    [
        ("SUSPENDED", ENGINE, "it is suspended: nothing runs"),
        ("RUNNING", {**ENGINE, "workflow_workers": 0}, "no workflow worker is connected"),
        ("RUNNING", {"sidecar": "no answer within 2s"}, "the sidecar does not answer"),
        ("STALLED", ENGINE, "it is STALLED: a replica whose code lacks a version mark"),
    ],
)
def test_what_holds_every_instance_comes_first(status: str, engine: dict, first: str) -> None:
    h = waiting_order()
    found = diagnose(context(rows_of(h.history), h.now, state=state(status), engine=engine))
    assert found["summary"].startswith(first), found["findings"]
    assert found["runtime"] == engine
    if status == "STALLED":  # expected mid-rollout: wait first, terminate only if it stays
        assert "wait for the rollout to finish" in found["summary"]
        assert "terminate it only if it stays STALLED" in found["summary"]


def test_dead_letters_of_the_business_id_are_listed() -> None:
    letters = [
        {"event_id": "o-1-s1-manager", "body": "{}"},
        {"event_id": "junk-1", "body": '{"data": {"order_id": "o-1"}}'},
        {"event_id": "o-10", "body": '{"order_id": "o-10"}'},
        {"event_id": "x", "body": '{"order_id":"o-1"}'},
    ]
    assert [belongs(d, "o-1") for d in letters] == [True, True, False, True]
    h = waiting_order()
    found = diagnose(context(rows_of(h.history), h.now, dead_letters=letters))
    assert [d["event_id"] for d in found["dead_letters"]] == ["o-1-s1-manager", "junk-1", "x"]


def test_names_resemble_by_punctuation_case_or_a_close_spelling() -> None:
    awaited = {"approval_outcome", "approval_stage"}
    assert resembles("ApprovalOutcome", awaited) == "approval_outcome"
    assert resembles("approval_outcom", awaited) == "approval_outcome"
    assert resembles("shipment", awaited) is None


def entry(deadline: datetime | None, status: str = "RUNNING") -> Entry:
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    return Entry(
        instance_id="order-o-1",
        name="order_workflow",
        status=status,
        created_at=at,
        updated_at=at,
        deadline=deadline,
    )


def test_waiting_for_a_person_before_the_deadline_is_not_stuck_but_the_rest_is() -> None:
    h = waiting_order()
    rows = rows_of(h.history)
    later = h.now + timedelta(days=2)  # quiet for two days, the backstop still ahead
    quiet = timedelta(hours=1)
    assert stuck_because(entry(h.now + timedelta(days=10)), state(), rows, quiet, later) == []
    past = stuck_because(entry(h.now + timedelta(days=1)), state(), rows, quiet, later)
    assert past == ["past its deadline (2026-01-06T09:00:00Z)"]
    suspended = stuck_because(entry(None), state("SUSPENDED"), rows, quiet, later)
    assert suspended == ["suspended, no progress since 2026-01-05T09:00:00Z"]
    assert stuck_because(entry(None, "COMPLETED"), state("COMPLETED"), rows, quiet, later) == []
    h.raise_event("approval-outcome", {"x": 1})
    stranded = stuck_because(entry(None), state(), rows_of(h.history), quiet, h.now)
    assert stranded == ["event 'approval-outcome' arrived and no wait took it"]


def test_an_old_recorded_history_waits_without_a_cancel_waiter() -> None:
    events = load_history(
        HISTORIES / "order_workflow" / "escalation_followed_then_vp_approves.json"
    )
    cut = next(i for i, e in enumerate(events) if e.eventRaised.name == APPROVAL_OUTCOME_EVENT)
    rows = rows_of(events[:cut])
    found = diagnose(context(rows, datetime(2026, 11, 23, 14, 47, 31, tzinfo=UTC)))
    assert found["waiting_for"]["events"] == ["approval_outcome", "approval_stage"]
    assert found["last_progress_at"] == "2026-11-23T14:47:30.651524Z"
