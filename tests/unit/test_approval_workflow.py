"""approval_workflow, driven step by step on a virtual clock: days pass in microseconds."""

import logging
from datetime import timedelta
from typing import Any

import pytest

from approvals.domain import ApprovalView
from approvals.workflows import (
    DECISION_EVENT,
    PUBLISH_OUTCOME,
    RECORD_APPROVAL,
    REMIND_APPROVERS,
    REQUEST_NEXT_STAGE,
    ApprovalInput,
    approval_workflow,
)
from contracts.policy import ApprovalPolicy, OnManagerTimeout
from contracts.timestamps import rfc3339
from control.instances import TRACK_INSTANCE
from workflow_harness import DEFAULT_START, WorkflowHarness

POLICY = ApprovalPolicy()
T0 = DEFAULT_START
_counter = iter(range(1, 10_000))


def harness(tier: str = "manager", policy: ApprovalPolicy = POLICY, **over: Any) -> WorkflowHarness:
    due = T0 + (policy.manager_deadline if tier == "manager" else policy.vp_deadline)
    request = {
        "request_id": f"o-1-s1-{tier}",
        "order_id": "o-1",
        "customer_id": "c-1",
        "amount": "1200.00" if tier == "manager" else "9000.00",
        "currency": "EUR",
        "tier": tier,
        "stage": 1,
        "due_at": due.isoformat(),
        "reason": "test",
        **over,
    }
    return harness_for(ApprovalInput(request=request, policy=policy.snapshot()))


def harness_for(inp: ApprovalInput) -> WorkflowHarness:
    """approval_workflow on this input, with every activity scripted to succeed."""
    return WorkflowHarness(
        approval_workflow,
        inp.model_dump(mode="json"),
        instance_id="approval-o-1",
        activities={
            TRACK_INSTANCE: None,
            PUBLISH_OUTCOME: None,
            RECORD_APPROVAL: None,
            REQUEST_NEXT_STAGE: None,
            REMIND_APPROVERS: None,
        },
    )


def decision(
    approver: str = "m-1",
    role: str = "manager",
    approved: bool = True,
    decision_id: str | None = None,
    order_id: str = "o-1",
) -> dict[str, Any]:
    return {
        "decision_id": decision_id or f"d-{next(_counter)}",
        "order_id": order_id,
        "approved": approved,
        "approver_id": approver,
        "approver_role": role,
        "reason": "ok" if approved else "no",
        "decided_at": T0.isoformat(),
    }


def published(h: WorkflowHarness) -> dict[str, Any]:
    (call,) = h.calls_to(PUBLISH_OUTCOME)
    return call.input  # type: ignore[no-any-return]


def kinds(h: WorkflowHarness) -> list[str]:
    return [e["kind"] for e in h.result["log"]]


def test_manager_approves() -> None:
    h = harness().start()
    assert h.custom_status is not None and h.custom_status.startswith("awaiting manager decision")
    h.advance(timedelta(hours=20)).raise_event(DECISION_EVENT, decision())
    assert published(h)["outcome"] == "approved" and published(h)["decided_by"] == "m-1"
    assert h.result["stages"] == 1 and kinds(h) == ["requested", "accepted"]
    assert h.calls_to(RECORD_APPROVAL)[-1].input["status"] == "approved"
    h.assert_deterministic()


def test_manager_rejects() -> None:
    h = harness().start().raise_event(DECISION_EVENT, decision(approved=False))
    assert published(h)["outcome"] == "rejected" and published(h)["reason"] == "no"


def test_vp_approves_a_large_order() -> None:
    h = harness("vp").start().raise_event(DECISION_EVENT, decision("v-1", "vp"))
    assert published(h)["outcome"] == "approved" and published(h)["decided_by"] == "v-1"


def test_vp_may_decide_a_manager_stage() -> None:
    h = harness().start().raise_event(DECISION_EVENT, decision("v-1", "vp"))
    assert published(h)["decided_by"] == "v-1"


def test_unauthorised_decision_is_recorded_and_ignored_then_a_valid_one_counts() -> None:
    h = harness("vp").start()
    h.raise_event(DECISION_EVENT, decision("m-1", "manager"))
    assert not h.done
    view = h.calls_to(RECORD_APPROVAL)[-1].input
    assert view["status"] == "pending" and view["log"][-1]["kind"] == "ignored"
    assert "manager may not decide a VP stage" in view["log"][-1]["note"]
    h.raise_event(DECISION_EVENT, decision("v-1", "vp"))
    assert published(h)["decided_by"] == "v-1"
    assert kinds(h) == ["requested", "ignored", "accepted"]
    h.assert_deterministic()


def test_nobody_decides_their_own_order() -> None:
    h = harness().start().raise_event(DECISION_EVENT, decision("c-1", "vp"))
    assert not h.done
    h.raise_event(DECISION_EVENT, decision("m-2"))
    assert published(h)["decided_by"] == "m-2"
    assert "own order" in h.result["log"][1]["note"]


def test_duplicate_decision_counts_once() -> None:
    h = harness("vp").start()
    h.raise_event(DECISION_EVENT, decision("m-1", "manager", decision_id="d-dup"))
    h.raise_event(DECISION_EVENT, decision("m-1", "manager", decision_id="d-dup"))
    h.raise_event(DECISION_EVENT, decision("v-1", "vp", approved=False))
    assert kinds(h) == ["requested", "ignored", "duplicate", "accepted"]
    assert published(h)["outcome"] == "rejected"


def test_decision_that_arrives_before_the_wait_is_not_lost() -> None:
    h = harness().hold(RECORD_APPROVAL).start()  # the first record_approval is still running
    assert not h.waiting_for
    h.raise_event(DECISION_EVENT, decision("m-1"))  # buffered: the instance has not waited yet
    h.release(RECORD_APPROVAL)
    assert published(h)["outcome"] == "approved"
    h.assert_deterministic()


def test_decision_after_completion_has_no_effect() -> None:
    h = harness().start().raise_event(DECISION_EVENT, decision("m-1"))
    assert h.status == "COMPLETED" and h.result["outcome"] == "approved"
    result = h.result
    h.raise_event(DECISION_EVENT, decision("v-1", "vp", approved=False))
    assert h.result == result and len(h.calls_to(PUBLISH_OUTCOME)) == 1
    assert [name for name, _ in h.dropped_events] == [DECISION_EVENT]


def test_manager_timeout_escalates_to_vp_who_approves() -> None:
    h = harness().start()
    h.advance(POLICY.manager_deadline)
    (nxt,) = h.calls_to(REQUEST_NEXT_STAGE)
    assert nxt.input["tier"] == "vp" and nxt.input["stage"] == 2
    assert nxt.input["request_id"] == "o-1-s2-vp"
    assert nxt.input["due_at"].startswith((T0 + timedelta(days=8)).date().isoformat())
    assert h.custom_status is not None and "awaiting vp decision (stage 2)" in h.custom_status
    h.raise_event(DECISION_EVENT, decision("m-1", "manager"))  # too late for a manager
    h.raise_event(DECISION_EVENT, decision("v-1", "vp"))
    assert published(h)["decided_by"] == "v-1" and h.result["stages"] == 2
    assert published(h)["tier"] == "vp"
    assert kinds(h) == ["requested", "reminded", "timed_out", "escalated", "ignored", "accepted"]
    h.assert_deterministic()


def test_each_stage_reminds_its_approvers_once_a_day_before_it_is_due() -> None:
    h = harness().start()
    h.advance(POLICY.manager_deadline - POLICY.reminder_before - timedelta(seconds=1))
    assert not h.calls_to(REMIND_APPROVERS)
    h.advance(timedelta(seconds=1))
    (first,) = h.calls_to(REMIND_APPROVERS)
    assert (first.input["request_id"], first.input["tier"], first.input["stage"]) == (
        "o-1-s1-manager-reminder",
        "manager",
        1,
    )
    assert first.input["due_at"] == rfc3339(T0 + POLICY.manager_deadline)
    assert first.input["reason"].startswith("a reminder: nobody has decided yet")
    h.advance(POLICY.reminder_before)  # the manager stage times out; the VP stage opens
    h.advance(POLICY.vp_deadline - POLICY.reminder_before)
    assert [c.input["request_id"] for c in h.calls_to(REMIND_APPROVERS)] == [
        "o-1-s1-manager-reminder",
        "o-1-s2-vp-reminder",
    ]
    h.raise_event(DECISION_EVENT, decision("v-1", "vp"))
    assert kinds(h) == ["requested", "reminded", "timed_out", "escalated", "reminded", "accepted"]
    assert h.calls_to(RECORD_APPROVAL)[1].input["log"][-1]["kind"] == "reminded"  # in the inbox
    h.assert_deterministic()


def test_a_stage_decided_before_its_reminder_reminds_nobody() -> None:
    h = harness().start().advance(timedelta(hours=1)).raise_event(DECISION_EVENT, decision())
    h.run_until_complete()
    assert not h.calls_to(REMIND_APPROVERS) and published(h)["outcome"] == "approved"


def test_a_stage_shorter_than_the_reminder_lead_reminds_nobody() -> None:
    short = ApprovalPolicy(manager_deadline=timedelta(hours=12), reminder_before=timedelta(days=1))
    h = harness(policy=short).start()
    h.run_until_complete()
    assert [c.input["stage"] for c in h.calls_to(REMIND_APPROVERS)] == [2]  # the VP's 5 days


def test_an_approval_started_before_reminders_replays_without_one() -> None:
    """Its snapshot has no reminder_before: read as 0, so no timer its history never had."""
    old = ApprovalPolicy().snapshot()
    del old["reminder_before"]
    inp = harness().input | {"policy": old}
    h = harness_for(ApprovalInput.model_validate(inp)).start()
    h.run_until_complete()
    assert not h.calls_to(REMIND_APPROVERS) and published(h)["outcome"] == "expired"


def test_manager_timeout_rejects_when_configured() -> None:
    h = harness(policy=ApprovalPolicy(on_manager_timeout=OnManagerTimeout.REJECT)).start()
    h.run_until_complete()
    assert published(h)["outcome"] == "rejected" and published(h)["reason"] == "manager_timeout"
    assert (kinds(h)[-1], h.result["log"][-1]["note"]) == ("timed_out", "manager_timeout")
    assert not h.calls_to(REQUEST_NEXT_STAGE)
    assert h.now == T0 + POLICY.manager_deadline


def test_last_stage_timeout_expires() -> None:
    h = harness().start()
    h.run_until_complete()
    assert published(h) | {"decided_at": None} == {
        "order_id": "o-1",
        "outcome": "expired",
        "decided_by": "policy",
        "tier": None,
        "reason": "approval_timeout",
        "decided_at": None,
    }
    assert h.now == T0 + POLICY.manager_deadline + POLICY.vp_deadline
    assert (kinds(h)[-1], h.result["log"][-1]["note"]) == ("timed_out", "approval_timeout")
    h.assert_deterministic()


def test_an_ignored_decision_does_not_restart_the_stage_clock() -> None:
    h = harness().start()
    h.advance(timedelta(days=2)).raise_event(DECISION_EVENT, decision("c-1"))
    h.advance(timedelta(days=1))
    assert len(h.calls_to(REQUEST_NEXT_STAGE)) == 1  # escalated at day 3, not day 5


def test_malformed_decision_is_logged_and_ignored() -> None:
    h = harness().start().raise_event(DECISION_EVENT, {"approved": "maybe"})
    h.raise_event(DECISION_EVENT, decision(order_id="o-2"))
    h.raise_event(DECISION_EVENT, decision())
    assert kinds(h) == ["requested", "malformed", "ignored", "accepted"]


def test_the_decision_log_and_the_inbox_say_what_arrived_and_what_was_done_with_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="approvals.workflows")
    h = harness(policy=ApprovalPolicy(reminder_before=timedelta(0))).start()  # reminders: above
    h.raise_event(DECISION_EVENT, {"approved": "maybe"})
    h.raise_event(DECISION_EVENT, decision(decision_id="d-other", order_id="o-2"))
    h.raise_event(DECISION_EVENT, decision("c-1", decision_id="d-own"))
    h.advance(POLICY.manager_deadline)
    h.raise_event(DECISION_EVENT, decision(decision_id="d-mgr"))
    h.raise_event(DECISION_EVENT, decision(decision_id="d-mgr"))
    h.raise_event(DECISION_EVENT, decision("v-1", "vp", decision_id="d-vp"))
    vp_due = rfc3339(T0 + POLICY.manager_deadline + POLICY.vp_deadline)
    log = h.result["log"]
    assert [(e["kind"], e["stage"], e["tier"], e["note"]) for e in log] == [
        ("requested", 1, "manager", "test"),
        ("malformed", 1, "manager", "a decision event that is not a DecisionSubmitted"),
        ("ignored", 1, "manager", "decision is for order o-2"),
        ("ignored", 1, "manager", "approvers may not decide their own order"),
        ("timed_out", 1, "manager", "manager deadline passed; escalating to a VP"),
        ("escalated", 2, "vp", f"VP decision due {vp_due}"),
        ("ignored", 2, "vp", "a manager may not decide a VP stage"),
        ("duplicate", 2, "vp", "already counted"),
        ("accepted", 2, "vp", "ok"),
    ]
    nobody = (None, None, None)
    assert [(e["decision_id"], e["approver_id"], e["approved"]) for e in log] == [
        nobody,
        nobody,
        ("d-other", "m-1", True),
        ("d-own", "c-1", True),
        nobody,
        nobody,
        ("d-mgr", "m-1", True),
        ("d-mgr", "m-1", True),
        ("d-vp", "v-1", True),
    ]
    # The inbox is written at the start, on each decision it shows, and at the end.
    views = [c.input for c in h.calls_to(RECORD_APPROVAL)]
    assert [(v["status"], v["stage"], v["decided_by"], v["reason"]) for v in views] == [
        ("pending", 1, None, ""),
        ("pending", 1, None, ""),
        ("pending", 2, None, ""),
        ("pending", 2, None, ""),
        ("approved", 2, "v-1", "ok"),
    ]
    (nxt,) = h.calls_to(REQUEST_NEXT_STAGE)
    assert nxt.input["reason"] == "the manager did not decide in time; escalated to a VP"
    assert h.custom_status == "approved by v-1"
    (track,) = h.calls_to(TRACK_INSTANCE)
    assert track.input == {
        "instance_id": "approval-o-1",
        "name": "approval_workflow",
        "status": "COMPLETED",
        "at": h.now.isoformat(),
    }
    # Once each, although the history is replayed at every step.
    assert caplog.messages == [
        "approval o-1: ignored decision d-own: approvers may not decide their own order",
        "approval o-1: ignored decision d-mgr: a manager may not decide a VP stage",
    ]


def test_the_inbox_shows_the_rate_that_decided_the_tier_through_escalation() -> None:
    worth = {
        "base_currency": "EUR",
        "base_amount": "1100.00",
        "rate": "0.0055",
        "rate_as_of": "2026-11-20",
    }
    h = harness(amount="200000", currency="JPY", valuation=worth).start()
    first = h.calls_to(RECORD_APPROVAL)[0].input
    assert (first["amount"], first["currency"], first["valuation"]) == ("200000", "JPY", worth)
    assert ApprovalView.model_validate(first).amount_text == (
        "200000 JPY (1100.00 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20)"
    )
    h.advance(POLICY.manager_deadline)
    (nxt,) = h.calls_to(REQUEST_NEXT_STAGE)
    assert nxt.input["tier"] == "vp" and nxt.input["valuation"] == worth
    assert h.calls_to(RECORD_APPROVAL)[-1].input["valuation"] == worth
    h.assert_deterministic()


def test_a_request_made_before_amounts_were_valued_still_shows_its_amount() -> None:
    h = harness().start()
    view = h.calls_to(RECORD_APPROVAL)[0].input
    assert view["valuation"] is None
    assert ApprovalView.model_validate(view).amount_text == "1200.00 EUR"


# What the release before base currencies put into the input: a currency list (SEK without a
# rate was fine then), thresholds in any currency, no base currency, rates or minor units.
PRE_UPGRADE_SNAPSHOT = {
    "auto_approve_below": "500",
    "manager_limit": "5000",
    "manager_deadline": "P1D",
    "vp_deadline": "P2D",
    "on_manager_timeout": "escalate_to_vp",
    "order_backstop": "P4D",
    "currencies": ["CHF", "EUR", "GBP", "JPY", "SEK", "USD"],
    "max_amount": "10000000",
}


def test_an_approval_started_before_base_currencies_replays_under_its_own_rules() -> None:
    request = {
        "request_id": "o-1-s1-manager",
        "order_id": "o-1",
        "customer_id": "c-1",
        "amount": "1200",
        "currency": "SEK",
        "tier": "manager",
        "stage": 1,
        "due_at": (T0 + timedelta(days=1)).isoformat(),
        "reason": "1200 SEK needs manager approval",
    }
    inp = ApprovalInput(request=request, policy=PRE_UPGRADE_SNAPSHOT)
    h = WorkflowHarness(
        approval_workflow,
        inp.model_dump(mode="json"),
        instance_id="approval-o-1",
        activities={
            TRACK_INSTANCE: None,
            PUBLISH_OUTCOME: None,
            RECORD_APPROVAL: None,
            REQUEST_NEXT_STAGE: None,
            REMIND_APPROVERS: None,
        },
    ).start()
    assert h.failure is None and not h.done
    h.advance(timedelta(days=1))  # the snapshot's manager deadline, then its VP deadline
    (nxt,) = h.calls_to(REQUEST_NEXT_STAGE)
    assert nxt.input["tier"] == "vp" and nxt.input["currency"] == "SEK"
    assert nxt.input["due_at"].startswith((T0 + timedelta(days=3)).date().isoformat())
    h.raise_event(DECISION_EVENT, decision("v-1", "vp"))
    assert published(h)["outcome"] == "approved" and h.result["stages"] == 2
    h.assert_deterministic()
