"""Cancelling an order: both workflows take the `cancel` event wherever they wait, driven
step by step on a virtual clock."""

from datetime import timedelta
from typing import Any

import pytest

from approvals.workflows import CANCEL_EVENT as APPROVAL_CANCEL
from approvals.workflows import DECISION_EVENT, PUBLISH_OUTCOME, RECORD_APPROVAL, REMIND_APPROVERS
from control.instances import TRACK_INSTANCE
from orders.workflows import (
    ADVANCE_ORDER,
    APPROVAL_OUTCOME_EVENT,
    APPROVAL_STAGE_EVENT,
    CANCEL_EVENT,
    CANCEL_PATCH,
    CLOSE_APPROVAL,
    FULFIL_ORDER,
    LEAN_PATCH,
    PUBLISH_STATUS,
    REQUEST_APPROVAL,
)
from tests.unit.order_steps import calls_to
from tests.unit.test_approval_workflow import decision, kinds
from tests.unit.test_approval_workflow import harness as approval_harness
from tests.unit.test_order_workflow import harness as order_harness
from tests.unit.test_order_workflow import outcome, statuses
from workflow_harness import DEFAULT_START

T0 = DEFAULT_START


def cancel(by: str = "olga", reason: str = "customer withdrew") -> dict[str, Any]:
    return {"by": by, "reason": reason, "at": T0.isoformat()}


def approval_cancelled(order_id: str = "o-1", by: str = "olga") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "cancelled_by": by,
        "reason": "customer withdrew",
        "cancelled_at": T0.isoformat(),
    }


def test_an_order_waiting_for_its_manager_is_cancelled_and_its_approval_closed() -> None:
    h = order_harness("1200.00").start()
    h.advance(timedelta(hours=5)).raise_event(CANCEL_EVENT, cancel())
    assert h.done and h.status == "COMPLETED"
    assert h.result["status"] == "cancelled"
    assert h.result["decided_by"] == "olga" and h.result["reason"] == "customer withdrew"
    (closing,) = calls_to(h, CLOSE_APPROVAL)
    assert closing.input["order_id"] == "o-1" and closing.input["cancelled_by"] == "olga"
    assert statuses(h) == ["received", "awaiting_approval", "cancelled"]
    last = calls_to(h, PUBLISH_STATUS)[-1].input
    assert last["detail"] == "cancelled by olga: customer withdrew"
    assert last["record"]["result"]["status"] == "cancelled"
    assert not calls_to(h, FULFIL_ORDER)
    assert calls_to(h, TRACK_INSTANCE)[-1].input["status"] == "COMPLETED"
    assert h.custom_status == "cancelled: customer withdrew"
    h.assert_deterministic()


def test_an_order_escalated_to_a_vp_is_cancelled_as_well() -> None:
    h = order_harness("1200.00").start()
    stage2 = calls_to(h, REQUEST_APPROVAL)[0].input | {
        "request_id": "o-1-s2-vp",
        "tier": "vp",
        "stage": 2,
        "due_at": (T0 + timedelta(days=8)).isoformat(),
    }
    h.advance(timedelta(days=3)).raise_event(APPROVAL_STAGE_EVENT, stage2)
    assert not h.done
    h.raise_event(CANCEL_EVENT, cancel("ada", "duplicate order"))
    assert h.result["status"] == "cancelled" and h.result["decided_by"] == "ada"
    assert len(calls_to(h, CLOSE_APPROVAL)) == 1
    h.assert_deterministic()


def test_a_cancel_raised_before_the_order_waits_is_taken_once_it_does() -> None:
    h = order_harness("1200.00").hold(ADVANCE_ORDER).start()  # asking for the approval
    h.raise_event(CANCEL_EVENT, cancel())
    assert not h.done and not calls_to(h, CLOSE_APPROVAL)
    h.release(ADVANCE_ORDER)
    assert h.result["status"] == "cancelled"
    assert statuses(h) == ["received", "awaiting_approval", "cancelled"]


def test_a_malformed_cancel_is_ignored_and_the_order_goes_on() -> None:
    h = order_harness("1200.00").start()
    h.raise_event(CANCEL_EVENT, {"reason": "no one said who"})
    assert not h.done and CANCEL_EVENT in h.waiting_for
    h.raise_event(APPROVAL_OUTCOME_EVENT, outcome("approved", tier="manager"))
    assert h.result["status"] == "completed" and not calls_to(h, CLOSE_APPROVAL)
    h.assert_deterministic()


@pytest.mark.parametrize(
    "bad",
    [
        cancel(by="", reason="customer withdrew"),
        cancel(by="olga", reason=""),
        cancel(by="p" * 129),  # a principal id has no length limit; cancelled_by has
    ],
    ids=["empty by", "empty reason", "by over 128"],
)
def test_a_cancel_the_approval_could_not_carry_is_ignored_and_the_order_goes_on(
    bad: dict[str, Any],
) -> None:
    h = order_harness("1200.00").start()
    h.raise_event(CANCEL_EVENT, bad)
    assert not h.done and CANCEL_EVENT in h.waiting_for
    assert not calls_to(h, CLOSE_APPROVAL)
    h.raise_event(CANCEL_EVENT, cancel())
    assert h.status == "COMPLETED" and h.result["status"] == "cancelled"
    (closing,) = calls_to(h, CLOSE_APPROVAL)
    assert closing.input["cancelled_by"] == "olga"
    h.assert_deterministic()


def test_a_cancel_after_the_outcome_changes_nothing() -> None:
    h = order_harness("1200.00").start()
    h.raise_event(APPROVAL_OUTCOME_EVENT, outcome("rejected", tier="manager"))
    h.raise_event(CANCEL_EVENT, cancel())
    assert h.result["status"] == "rejected" and not calls_to(h, CLOSE_APPROVAL)
    assert h.dropped_events == [(CANCEL_EVENT, cancel())]


def test_the_version_mark_is_recorded_in_the_history() -> None:
    h = order_harness("1200.00").start()
    marks = [p for e in h.history for p in e.workflowStarted.version.patches]
    assert marks == [LEAN_PATCH, CANCEL_PATCH]


def test_an_approval_is_closed_undecided_when_its_order_is_cancelled() -> None:
    h = approval_harness().start()
    h.advance(timedelta(hours=2)).raise_event(APPROVAL_CANCEL, approval_cancelled())
    assert h.done and h.status == "COMPLETED"
    assert h.result["outcome"] == "cancelled" and h.result["decided_by"] == "olga"
    assert not calls_to(h, PUBLISH_OUTCOME)
    view = calls_to(h, RECORD_APPROVAL)[-1].input
    assert view["status"] == "cancelled" and view["decided_by"] == "olga"
    assert view["reason"] == "customer withdrew"
    assert kinds(h) == ["requested", "cancelled"]
    assert calls_to(h, TRACK_INSTANCE)[-1].input["status"] == "COMPLETED"
    h.assert_deterministic()


def test_an_approval_cancelled_before_it_starts_waiting_records_pending_then_cancelled() -> None:
    """What the approvals app does for a cancellation that came before the request: it
    starts the approval and raises the cancel at once, before the approval's first step."""
    h = approval_harness().hold(RECORD_APPROVAL).start()
    h.raise_event(APPROVAL_CANCEL, approval_cancelled())
    h.release(RECORD_APPROVAL)
    assert h.done and h.result["outcome"] == "cancelled"
    assert [c.input["status"] for c in calls_to(h, RECORD_APPROVAL)] == ["pending", "cancelled"]
    assert not calls_to(h, PUBLISH_OUTCOME)
    h.assert_deterministic()


def test_an_escalated_approval_is_closed_at_its_vp_stage() -> None:
    h = approval_harness().start()
    h.advance(timedelta(days=3, seconds=1))
    assert calls_to(h, RECORD_APPROVAL)[-1].input["tier"] == "vp"
    h.raise_event(APPROVAL_CANCEL, approval_cancelled())
    assert h.result["outcome"] == "cancelled" and h.result["stages"] == 2
    # The manager's stage reminded its approvers a day before it was due; the VP's never came to.
    assert kinds(h) == ["requested", "reminded", "timed_out", "escalated", "cancelled"]
    assert [c.input["stage"] for c in calls_to(h, REMIND_APPROVERS)] == [1]
    h.assert_deterministic()


def test_a_cancelled_approval_reminds_nobody_afterwards() -> None:
    h = approval_harness().start()
    h.advance(timedelta(hours=2)).raise_event(APPROVAL_CANCEL, approval_cancelled())
    assert h.done and h.next_timer is None  # the reminder's timer went with the workflow
    assert not calls_to(h, REMIND_APPROVERS)
    h.assert_deterministic()


def test_the_cancel_wait_outlives_a_reminder() -> None:
    h = approval_harness().start()
    h.advance(timedelta(days=2))  # a day before the manager's three: the reminder
    assert len(calls_to(h, REMIND_APPROVERS)) == 1 and not h.done
    assert calls_to(h, RECORD_APPROVAL)[-1].input["status"] == "pending"
    h.raise_event(APPROVAL_CANCEL, approval_cancelled())
    assert h.result["outcome"] == "cancelled" and h.result["stages"] == 1
    assert kinds(h) == ["requested", "reminded", "cancelled"]
    assert calls_to(h, RECORD_APPROVAL)[-1].input["status"] == "cancelled"
    assert not calls_to(h, PUBLISH_OUTCOME) and len(calls_to(h, REMIND_APPROVERS)) == 1
    h.assert_deterministic()


def test_a_cancel_raised_while_the_reminder_is_sent_is_taken_after_it() -> None:
    h = approval_harness().hold(REMIND_APPROVERS).start()
    h.advance(timedelta(days=2))
    h.raise_event(APPROVAL_CANCEL, approval_cancelled())
    assert not h.done
    h.release(REMIND_APPROVERS)
    assert h.result["outcome"] == "cancelled"
    assert kinds(h) == ["requested", "reminded", "cancelled"]
    assert len(calls_to(h, REMIND_APPROVERS)) == 1
    h.assert_deterministic()


def test_a_malformed_cancel_then_a_reminder_leave_the_cancel_wait_in_place() -> None:
    h = approval_harness().start()
    h.raise_event(APPROVAL_CANCEL, approval_cancelled(order_id="o-2"))
    h.advance(timedelta(days=2))
    assert len(calls_to(h, REMIND_APPROVERS)) == 1 and not h.done
    h.raise_event(APPROVAL_CANCEL, approval_cancelled())
    assert kinds(h) == ["requested", "malformed", "reminded", "cancelled"]
    h.assert_deterministic()


def test_another_order_s_cancellation_is_logged_and_the_approval_still_waits() -> None:
    h = approval_harness().start()
    h.raise_event(APPROVAL_CANCEL, approval_cancelled(order_id="o-2"))
    assert not h.done
    h.raise_event(DECISION_EVENT, decision())
    assert h.result["outcome"] == "approved"
    assert kinds(h) == ["requested", "malformed", "accepted"]
    h.assert_deterministic()
