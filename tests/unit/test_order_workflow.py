"""order_workflow, driven step by step on a virtual clock."""

import logging
from datetime import timedelta
from typing import Any

import pytest
from dapr.ext.workflow import TaskFailedError

from contracts.money import Rate
from contracts.policy import ApprovalPolicy, load_policy
from control.instances import TRACK_INSTANCE
from orders.workflows import (
    ADVANCE_ORDER,
    APPROVAL_OUTCOME_EVENT,
    APPROVAL_STAGE_EVENT,
    CANCEL_EVENT,
    CLOSE_APPROVAL,
    FULFIL_ORDER,
    PUBLISH_STATUS,
    RECORD_ORDER,
    REQUEST_APPROVAL,
    OrderInput,
    order_workflow,
)
from tests.unit.order_steps import calls_to, with_steps
from workflow_harness import DEFAULT_START, ActivityFailed, WorkflowHarness

POLICY = ApprovalPolicy()
WAITING = {APPROVAL_OUTCOME_EVENT, APPROVAL_STAGE_EVENT, CANCEL_EVENT}


def order(amount: str = "120.00", **over: Any) -> dict[str, Any]:
    return {
        "order_id": "o-1",
        "customer_id": "c-1",
        "amount": amount,
        "currency": "EUR",
        "placed_at": DEFAULT_START.isoformat(),
        **over,
    }


def harness(
    amount: str = "120.00", policy: ApprovalPolicy = POLICY, **over: Any
) -> WorkflowHarness:
    return harness_for(OrderInput(order=order(amount, **over), policy=policy.snapshot()))


def harness_for(inp: OrderInput) -> WorkflowHarness:
    """order_workflow on this input, with every activity scripted to succeed."""
    return WorkflowHarness(
        order_workflow,
        inp.model_dump(mode="json"),
        instance_id="order-o-1",
        activities=with_steps(
            {
                TRACK_INSTANCE: None,
                PUBLISH_STATUS: None,
                RECORD_ORDER: None,
                REQUEST_APPROVAL: None,
                FULFIL_ORDER: {},
                CLOSE_APPROVAL: None,
            }
        ),
    )


def outcome(
    result: str, by: str = "m-1", reason: str = "", order_id: str = "o-1", tier: str | None = "vp"
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "outcome": result,
        "decided_by": by,
        "tier": tier,
        "reason": reason,
        "decided_at": DEFAULT_START.isoformat(),
    }


def statuses(h: WorkflowHarness) -> list[str]:
    return [c.input["status"] for c in calls_to(h, PUBLISH_STATUS)]


def test_small_order_is_approved_automatically() -> None:
    h = harness("499.99").start()
    assert h.done and h.result["status"] == "completed"
    assert h.result["reason"] == "auto_approved" and h.result["decided_by"] == "policy"
    assert statuses(h) == ["received", "approved", "completed"]
    assert not calls_to(h, REQUEST_APPROVAL)
    assert len(calls_to(h, FULFIL_ORDER)) == 1
    h.assert_deterministic()


@pytest.mark.parametrize(
    ("amount", "tier", "days"),
    [("500.00", "manager", 3), ("5000.00", "manager", 3), ("5000.01", "vp", 5)],
)
def test_larger_orders_request_approval_from_the_right_tier(
    amount: str, tier: str, days: int
) -> None:
    h = harness(amount).start()
    assert not h.done and h.waiting_for == WAITING
    (req,) = calls_to(h, REQUEST_APPROVAL)
    due = DEFAULT_START + timedelta(days=days)
    assert req.input["tier"] == tier and req.input["stage"] == 1
    assert req.input["request_id"] == f"o-1-s1-{tier}"
    assert req.input["due_at"] == due.isoformat().replace("+00:00", "Z")
    due_text = due.isoformat().replace("+00:00", "Z")
    assert h.custom_status == f"awaiting {tier} approval (stage 1), due {due_text}"
    assert statuses(h) == ["received", "awaiting_approval"]
    awaiting = calls_to(h, PUBLISH_STATUS)[-1].input
    assert awaiting["detail"] == f"{tier} approval due {due_text}"
    assert awaiting["record"]["approval"] == {"stage": 1, "tier": tier, "due_at": due_text}


def test_approved_outcome_fulfils_and_completes() -> None:
    h = harness("1200.00").start()
    h.advance(timedelta(hours=5))
    h.raise_event(APPROVAL_OUTCOME_EVENT, outcome("approved", reason="within budget"))
    assert h.result["status"] == "completed" and h.result["decided_by"] == "m-1"
    assert statuses(h) == ["received", "awaiting_approval", "approved", "completed"]
    assert calls_to(h, PUBLISH_STATUS)[2].input["detail"] == "by m-1: within budget"
    (fulfil,) = calls_to(h, FULFIL_ORDER)
    assert fulfil.at == DEFAULT_START + timedelta(hours=5)
    assert fulfil.input == {
        **order("1200.00"),
        "items": [],
        "placed_at": DEFAULT_START.isoformat().replace("+00:00", "Z"),
    }
    h.assert_deterministic()


def test_rejected_outcome_rejects_without_fulfilment() -> None:
    h = (
        harness("1200.00")
        .start()
        .raise_event(APPROVAL_OUTCOME_EVENT, outcome("rejected", reason="too expensive"))
    )
    assert h.result == {
        "order_id": "o-1",
        "status": "rejected",
        "reason": "too expensive",
        "decided_by": "m-1",
        "tier": "manager",
        "valuation": {
            "base_currency": "EUR",
            "base_amount": "1200.00",
            "rate": "1",
            "rate_as_of": None,
        },
    }
    assert statuses(h)[-1] == "rejected" and not calls_to(h, FULFIL_ORDER)
    rejected = calls_to(h, PUBLISH_STATUS)[-1].input
    assert rejected["detail"] == "too expensive" and rejected["record"]["result"] == h.result


def test_expired_approval_expires_the_order() -> None:
    h = (
        harness("9000.00")
        .start()
        .raise_event(
            APPROVAL_OUTCOME_EVENT, outcome("expired", by="policy", reason="approval_timeout")
        )
    )
    assert h.result["status"] == "expired" and h.result["reason"] == "approval_timeout"


def test_backstop_timeout_expires_the_order() -> None:
    h = harness("9000.00").start()
    h.run_until_complete()
    assert h.now == DEFAULT_START + POLICY.order_backstop
    assert h.result["status"] == "expired" and h.result["reason"] == "approval_timeout"
    assert h.result["decided_by"] == "policy"
    assert statuses(h)[-1] == "expired"
    h.assert_deterministic()


def test_malformed_or_foreign_outcomes_are_ignored_and_the_wait_goes_on() -> None:
    h = harness("900.00").start()
    h.raise_event(APPROVAL_OUTCOME_EVENT, {"nonsense": True})
    h.raise_event(APPROVAL_OUTCOME_EVENT, outcome("approved", order_id="other"))
    assert not h.done
    h.raise_event(APPROVAL_OUTCOME_EVENT, outcome("rejected"))
    assert h.result["status"] == "rejected"
    h.assert_deterministic()


def test_an_ignored_outcome_is_logged_once_although_the_history_is_replayed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="orders.workflows")
    h = harness("900.00").start()
    h.raise_event(APPROVAL_OUTCOME_EVENT, {"nonsense": True})
    h.raise_event(APPROVAL_OUTCOME_EVENT, outcome("approved", tier="manager"))
    assert h.result["status"] == "completed"
    assert caplog.messages == ["order o-1: ignored a malformed approval outcome"]


def test_invalid_order_is_rejected_not_failed() -> None:
    h = harness("-5").start()
    assert h.failure is None
    assert h.result["status"] == "rejected" and h.result["reason"] == "invalid_order"
    (status,) = calls_to(h, PUBLISH_STATUS)
    assert status.input["status"] == "rejected"
    assert "amount: Input should be greater than 0" in status.input["detail"]


def test_order_with_an_unusable_id_ends_without_publishing() -> None:
    h = harness(order_id="bad id!").start()
    assert h.result["status"] == "rejected" and not calls_to(h, PUBLISH_STATUS)


def test_policy_snapshot_in_the_input_rules() -> None:
    generous = ApprovalPolicy(auto_approve_below="1000")
    assert harness("900.00", policy=generous).start().result["status"] == "completed"


def test_a_flaky_activity_is_retried_after_its_back_off_and_the_order_goes_on() -> None:
    h = harness()
    failures = iter(["pubsub unavailable", "pubsub unavailable"])

    def flaky(_: Any) -> None:
        reason = next(failures, None)
        if reason:
            raise ActivityFailed(reason)

    h.activities[PUBLISH_STATUS] = flaky
    h.start()
    # The first attempt failed: the SDK waits on a durable timer of the policy's first interval.
    assert not h.done and h.next_timer == DEFAULT_START + timedelta(seconds=1)
    h.advance(timedelta(seconds=1))  # the second attempt fails too: the back-off doubles
    assert h.next_timer == DEFAULT_START + timedelta(seconds=3)
    h.advance(timedelta(seconds=2))
    assert h.result["status"] == "completed"
    # One activity says received, approved and completed: tried 3 times, it succeeded once.
    attempts = h.calls_to(ADVANCE_ORDER)
    assert [(c.attempt, c.at - DEFAULT_START) for c in attempts] == [
        (1, timedelta(0)),
        (2, timedelta(seconds=1)),
        (3, timedelta(seconds=3)),
    ]
    assert statuses(h)[-3:] == ["received", "approved", "completed"]
    h.assert_deterministic()


def test_failing_activity_fails_the_workflow_for_dapr_to_report() -> None:
    h = harness()

    def broken(_: Any) -> None:
        raise ActivityFailed("pubsub unavailable")

    h.activities[PUBLISH_STATUS] = broken
    h.start()
    with pytest.raises(TaskFailedError, match="pubsub unavailable"):
        h.run_until_complete()
    assert h.status == "FAILED" and isinstance(h.failure, TaskFailedError)
    assert len(h.calls_to(ADVANCE_ORDER)) == 5  # every attempt of the retry policy
    assert h.now == DEFAULT_START + timedelta(seconds=1 + 2 + 4 + 8)  # its back-off, in full
    h.assert_deterministic()


@pytest.mark.parametrize(
    ("decided_at", "counts"), [(None, False), ("manager", False), ("vp", True)]
)
def test_an_approval_counts_only_at_the_level_the_order_needs(
    decided_at: str | None, counts: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="orders.workflows")
    h = harness("9000.00").start()
    h.raise_event(APPROVAL_OUTCOME_EVENT, outcome("approved", tier=decided_at))
    assert h.done is counts
    if not counts:
        assert h.waiting_for == WAITING and not calls_to(h, FULFIL_ORDER)
        h.raise_event(APPROVAL_OUTCOME_EVENT, outcome("approved", tier="vp"))
    assert h.result["status"] == "completed"
    h.assert_deterministic()
    ignored = f"order o-1: ignored an approval at level {decided_at}; it needs vp"
    assert caplog.messages == ([] if counts else [ignored])  # once, although replayed


def test_a_manager_approval_is_enough_for_a_manager_sized_order() -> None:
    h = harness("1200.00").start()
    h.raise_event(APPROVAL_OUTCOME_EVENT, outcome("approved", tier="manager"))
    assert h.result["status"] == "completed"


def test_a_rejection_counts_at_any_level() -> None:
    h = harness("9000.00").start()
    h.raise_event(APPROVAL_OUTCOME_EVENT, outcome("rejected", tier=None))
    assert h.result["status"] == "rejected"


def test_a_jpy_order_is_tiered_on_its_value_in_euros() -> None:
    h = harness("9000", currency="JPY").start()  # 49.50 EUR: approved at once
    assert h.result["status"] == "completed" and h.result["reason"] == "auto_approved"
    assert h.result["valuation"] == {
        "base_currency": "EUR",
        "base_amount": "49.50",
        "rate": "0.0055",
        "rate_as_of": "2026-11-20",
    }
    received = calls_to(h, PUBLISH_STATUS)[0].input
    assert received["detail"] == "9000 JPY (49.50 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20)"
    h.assert_deterministic()


def test_a_gbp_order_that_is_worth_more_than_the_manager_limit_goes_to_a_vp() -> None:
    h = harness("4900", currency="GBP").start()
    (req,) = calls_to(h, REQUEST_APPROVAL)
    assert (req.input["tier"], req.input["amount"]) == ("vp", "4900.00")
    assert req.input["valuation"]["base_amount"] == "5586.00"
    assert req.input["reason"] == (
        "4900.00 GBP (5586.00 EUR; 1 GBP = 1.14 EUR as of 2026-11-20) needs vp approval"
    )
    h.assert_deterministic()


def test_the_rate_in_the_workflow_input_decides_the_tier() -> None:
    assert harness("90000", currency="JPY").start().result["reason"] == "auto_approved"  # 495
    dear_yen = POLICY.model_copy(
        update={"rates": {**POLICY.rates, "JPY": Rate(rate="0.01", as_of="2026-11-21")}}
    )
    h = harness("90000", policy=dear_yen, currency="JPY").start()
    (req,) = calls_to(h, REQUEST_APPROVAL)  # 900.00 EUR at the input's rate
    assert req.input["tier"] == "manager"
    assert req.input["valuation"]["rate_as_of"] == "2026-11-21"


def test_an_order_in_a_currency_without_a_rate_is_rejected_with_the_reason() -> None:
    euro_only = load_policy({"POLICY_RATES": ""})
    h = harness("10.00", policy=euro_only, currency="USD").start()
    assert h.result["status"] == "rejected" and h.result["reason"] == "invalid_order"
    (status,) = calls_to(h, PUBLISH_STATUS)
    assert "currency: 'USD' is not accepted" in status.input["detail"]
    assert not calls_to(h, REQUEST_APPROVAL)


def test_a_jpy_amount_with_decimals_is_rejected() -> None:
    h = harness("9000.5", currency="JPY").start()
    assert h.result["status"] == "rejected"
    (status,) = calls_to(h, PUBLISH_STATUS)
    assert "JPY has no minor units" in status.input["detail"]


def old_snapshot(release: str) -> dict[str, Any]:
    """The policy snapshot an earlier release put into the workflow input."""
    snap = {k: v for k, v in POLICY.snapshot().items() if k != "tier_basis"}
    if release == "rounded value":  # the first release with a base currency
        return snap
    assert release == "raw amount"  # before base currencies
    snap = {k: v for k, v in snap.items() if k not in ("base_currency", "rates", "minor_units")}
    snap["currencies"] = ["CHF", "EUR", "GBP", "JPY", "SEK", "USD"]
    return snap


def old_harness(amount: str, currency: str, release: str) -> WorkflowHarness:
    inp = OrderInput(order=order(amount, currency=currency), policy=old_snapshot(release))
    return WorkflowHarness(
        order_workflow,
        inp.model_dump(mode="json"),
        instance_id="order-o-1",
        activities=with_steps(
            {TRACK_INSTANCE: None, PUBLISH_STATUS: None, REQUEST_APPROVAL: None, FULFIL_ORDER: {}}
        ),
    )


def test_an_order_started_before_base_currencies_keeps_its_raw_number_tier() -> None:
    """Replay must repeat what the order did when it started: 9000 JPY went to a VP then."""
    h = old_harness("9000.00", "JPY", "raw amount").start()
    (req,) = calls_to(h, REQUEST_APPROVAL)
    assert req.input["tier"] == "vp" and req.input["valuation"] is None
    assert req.input["reason"] == "9000.00 JPY needs vp approval"  # as its release said it
    h.assert_deterministic()


def test_an_order_started_before_base_currencies_shows_its_amount_as_it_came() -> None:
    """That snapshot has no minor units: an amount keeps the decimals it has, none here."""
    h = old_harness("9000", "JPY", "raw amount").start()
    (req,) = calls_to(h, REQUEST_APPROVAL)
    assert req.input["reason"] == "9000 JPY needs vp approval"


def test_an_order_worth_a_fraction_over_the_manager_limit_goes_to_a_vp() -> None:
    h = harness("909091", currency="JPY").start()  # 5000.0005 EUR, shown as 5000.00 EUR
    (req,) = calls_to(h, REQUEST_APPROVAL)
    assert req.input["tier"] == "vp"
    assert req.input["reason"] == (
        "909091 JPY (5000.00 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20) needs vp approval"
    )
    h.assert_deterministic()


def test_an_order_worth_a_fraction_under_the_auto_approval_limit_is_approved_at_once() -> None:
    h = harness("90909", currency="JPY").start()  # 499.9995 EUR, shown as 500.00 EUR
    assert h.result["status"] == "completed" and h.result["reason"] == "auto_approved"
    assert h.result["valuation"]["base_amount"] == "500.00"
    assert not calls_to(h, REQUEST_APPROVAL)
    h.assert_deterministic()


@pytest.mark.parametrize(
    ("amount", "tier"), [("909091", "manager"), ("909092", "vp"), ("90909", "manager")]
)
def test_an_order_started_when_the_rounded_value_decided_keeps_its_tier(
    amount: str, tier: str
) -> None:
    """Such an order may be waiting for the approver its release chose; replay keeps it so."""
    h = old_harness(amount, "JPY", "rounded value").start()
    (req,) = calls_to(h, REQUEST_APPROVAL)
    assert req.input["tier"] == tier
    h.assert_deterministic()


def test_an_order_in_a_currency_only_the_policy_knows_requests_its_approval() -> None:
    """BHD is no default currency: the request is made under the snapshot, not the defaults."""
    bhd = load_policy({"POLICY_RATES": "BHD=2.28@2026-11-20"})
    h = harness("1000.000", policy=bhd, currency="BHD").start()  # 2280.00 EUR
    assert h.failure is None
    (req,) = calls_to(h, REQUEST_APPROVAL)
    assert (req.input["tier"], req.input["amount"], req.input["currency"]) == (
        "manager",
        "1000.000",
        "BHD",
    )
    # Its escalation too, although the default limits know no BHD.
    h.raise_event(APPROVAL_STAGE_EVENT, stage(2) | {"amount": "1000.000", "currency": "BHD"})
    (recorded,) = calls_to(h, RECORD_ORDER)
    assert recorded.input["approval"]["stage"] == 2
    h.assert_deterministic()


def stage(n: int, tier: str = "vp", days: int = 5, order_id: str = "o-1") -> dict[str, Any]:
    """The ApprovalRequested of a later stage, as the orders app raises it (approval_stage)."""
    return {
        "request_id": f"{order_id}-s{n}-{tier}",
        "order_id": order_id,
        "customer_id": "c-1",
        "amount": "1200.00",
        "currency": "EUR",
        "tier": tier,
        "stage": n,
        "due_at": (DEFAULT_START + timedelta(days=days)).isoformat(),
        "reason": "the manager did not decide in time; escalated to a VP",
    }


def test_an_escalated_approval_moves_the_order_to_the_vp_stage() -> None:
    h = harness("1200.00").start()
    h.advance(timedelta(days=3)).raise_event(APPROVAL_STAGE_EVENT, stage(2, days=8))
    assert not h.done and h.waiting_for == WAITING
    due = (DEFAULT_START + timedelta(days=8)).isoformat().replace("+00:00", "Z")
    (recorded,) = calls_to(h, RECORD_ORDER)
    assert recorded.input == {
        "order_id": "o-1",
        "status": "awaiting_approval",
        "detail": f"vp approval due {due} (stage 2): "
        "the manager did not decide in time; escalated to a VP",
        "approval": {"stage": 2, "tier": "vp", "due_at": due},
        "updated_at": (DEFAULT_START + timedelta(days=3)).isoformat().replace("+00:00", "Z"),
    }
    assert h.custom_status == f"awaiting vp approval (stage 2), due {due}"
    assert statuses(h) == ["received", "awaiting_approval"]  # the customer is not told again
    h.raise_event(APPROVAL_OUTCOME_EVENT, outcome("approved", by="val", tier="vp"))
    assert h.result["status"] == "completed" and h.result["decided_by"] == "val"
    h.assert_deterministic()


def test_a_stage_the_order_has_seen_or_another_order_s_is_ignored() -> None:
    h = harness("1200.00").start()
    h.raise_event(APPROVAL_STAGE_EVENT, stage(1, tier="manager"))
    h.raise_event(APPROVAL_STAGE_EVENT, stage(2, order_id="o-2"))
    h.raise_event(APPROVAL_STAGE_EVENT, {"stage": "nonsense"})
    assert not calls_to(h, RECORD_ORDER) and h.waiting_for == WAITING
    h.raise_event(APPROVAL_STAGE_EVENT, stage(2))
    h.raise_event(APPROVAL_STAGE_EVENT, stage(2))  # redelivered
    assert len(calls_to(h, RECORD_ORDER)) == 1
    h.raise_event(APPROVAL_OUTCOME_EVENT, outcome("rejected", by="val"))
    assert h.result["status"] == "rejected"
    h.assert_deterministic()


def test_every_step_tells_the_order_record_what_it_learnt() -> None:
    h = harness("1200.00").start()
    h.raise_event(APPROVAL_OUTCOME_EVENT, outcome("approved", tier="manager", reason="ok"))
    steps = [c.input for c in calls_to(h, PUBLISH_STATUS)]
    assert [step["status"] for step in steps] == [
        "received",
        "awaiting_approval",
        "approved",
        "completed",
    ]
    for step in steps:
        assert step["record"]["amount_text"] == "1200.00 EUR"
        assert step["record"]["customer_id"] == "c-1"
        assert step["record"]["placed_at"].endswith("Z")
    assert steps[-1]["record"]["result"] == h.result
    assert "result" not in steps[2]["record"]
    assert steps[-1]["detail"] == ""  # completed says nothing more than its result


def test_the_record_learns_the_order_as_it_was_accepted_with_its_value() -> None:
    h = harness("4900", currency="GBP").start()
    received = calls_to(h, PUBLISH_STATUS)[0].input
    assert received["record"] == {
        "customer_id": "c-1",
        "amount": "4900.00",
        "currency": "GBP",
        "amount_text": "4900.00 GBP (5586.00 EUR; 1 GBP = 1.14 EUR as of 2026-11-20)",
        "valuation": {
            "base_currency": "EUR",
            "base_amount": "5586.00",
            "rate": "1.14",
            "rate_as_of": "2026-11-20",
        },
        "placed_at": DEFAULT_START.isoformat().replace("+00:00", "Z"),
    }


@pytest.mark.parametrize(
    ("result", "reason", "says"),
    [("approved", "", "completed"), ("rejected", "too expensive", "rejected: too expensive")],
)
def test_the_custom_status_and_the_instance_index_say_how_the_order_ended(
    result: str, reason: str, says: str
) -> None:
    h = harness("1200.00").start()
    h.raise_event(APPROVAL_OUTCOME_EVENT, outcome(result, tier="manager", reason=reason))
    assert h.custom_status == says
    (track,) = calls_to(h, TRACK_INSTANCE)
    assert track.input == {
        "instance_id": "order-o-1",
        "name": "order_workflow",
        "status": "COMPLETED",
        "at": h.now.isoformat(),
    }


def test_an_invalid_order_is_logged_once_and_decided_by_nobody(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="orders.workflows")
    h = harness("-5").start()
    assert (h.result["reason"], h.result["decided_by"]) == ("invalid_order", "")
    assert h.custom_status == "rejected: invalid_order"
    assert caplog.messages == [
        "order o-1 rejected: invalid_order: amount: Input should be greater than 0"
    ]


def test_an_order_without_an_id_is_rejected_under_its_instance_s_id() -> None:
    placed = {k: v for k, v in order().items() if k != "order_id"}
    h = harness_for(OrderInput(order=placed, policy=POLICY.snapshot())).start()
    assert (h.result["order_id"], h.result["reason"]) == ("o-1", "invalid_order")
    (step,) = calls_to(h, PUBLISH_STATUS)
    assert (step.input["order_id"], step.input["status"]) == ("o-1", "rejected")


def test_an_invalid_order_s_rejection_carries_its_result() -> None:
    h = harness("-5").start()
    (step,) = calls_to(h, PUBLISH_STATUS)
    assert step.input["record"]["result"] == h.result
    assert h.result["status"] == "rejected"
