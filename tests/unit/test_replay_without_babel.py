"""Workflows run and replay from their input alone: babel's currency data is never consulted.

The policy snapshot in a workflow's input has every currency code and minor unit the workflow
needs; they were checked against babel when the snapshot was taken. Here babel raises, so a
lookup anywhere in a workflow would fail it, and a babel upgrade could not change a replay.
"""

from datetime import timedelta
from typing import Any

import babel.numbers
import pytest

import contracts.money
from approvals.workflows import (
    DECISION_EVENT,
    RECORD_APPROVAL,
    REQUEST_NEXT_STAGE,
    ApprovalInput,
)
from contracts.policy import ApprovalPolicy, load_policy
from orders.workflows import (
    APPROVAL_OUTCOME_EVENT,
    PUBLISH_STATUS,
    REQUEST_APPROVAL,
    OrderInput,
)
from tests.unit.order_steps import calls_to
from tests.unit.test_approval_workflow import harness_for as approval_harness_for
from tests.unit.test_order_workflow import harness_for as order_harness_for
from workflow_harness import DEFAULT_START, WorkflowHarness

# Taken while babel works, as the orders service takes it when an order arrives.
POLICY = load_policy(
    {
        "POLICY_RATES": "JPY=0.0055@2026-11-20,IQD=0.00066@2026-11-20",
        "POLICY_MINOR_UNITS": "IQD=3",
    }
)
SNAPSHOT = POLICY.snapshot()
# From the release before base currencies: no base currency, rates or minor units.
PRE_UPGRADE = {
    "auto_approve_below": "500",
    "manager_limit": "5000",
    "manager_deadline": "P3D",
    "vp_deadline": "P5D",
    "on_manager_timeout": "escalate_to_vp",
    "order_backstop": "P10D",
    "currencies": ["EUR", "JPY", "SEK"],
    "max_amount": "10000000",
}


class BabelAsked(RuntimeError):
    """Babel's currency data was consulted."""


@pytest.fixture
def no_babel(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise BabelAsked(f"babel asked about {args}")

    for module in (contracts.money, babel.numbers):
        for name in ("get_currency_precision", "is_currency"):
            monkeypatch.setattr(module, name, refuse)


def order_harness(amount: str, currency: str, snapshot: dict[str, Any]) -> WorkflowHarness:
    order = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "amount": amount,
        "currency": currency,
        "placed_at": DEFAULT_START.isoformat(),
    }
    return order_harness_for(OrderInput(order=order, policy=snapshot))


def test_babel_is_really_unavailable_here(no_babel: None) -> None:
    with pytest.raises(BabelAsked):
        ApprovalPolicy()


@pytest.mark.parametrize(
    ("amount", "currency", "tier", "reason"),
    [
        (
            "909091",
            "JPY",
            "vp",
            "909091 JPY (5000.00 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20) needs vp approval",
        ),
        (
            "1500000.875",
            "IQD",
            "manager",
            "1500000.875 IQD (990.00 EUR; 1 IQD = 0.00066 EUR as of 2026-11-20) "
            "needs manager approval",
        ),
    ],
)
def test_an_order_needing_approval_runs_on_its_snapshot_alone(
    no_babel: None, amount: str, currency: str, tier: str, reason: str
) -> None:
    h = order_harness(amount, currency, SNAPSHOT).start()
    assert h.failure is None
    (req,) = calls_to(h, REQUEST_APPROVAL)
    assert (req.input["tier"], req.input["reason"]) == (tier, reason)
    h.raise_event(
        APPROVAL_OUTCOME_EVENT,
        {
            "order_id": "o-1",
            "outcome": "approved",
            "decided_by": "v-1",
            "tier": "vp",
            "decided_at": DEFAULT_START.isoformat(),
        },
    )
    assert h.failure is None and h.result["status"] == "completed"
    h.assert_deterministic()


@pytest.mark.parametrize(
    ("amount", "currency", "status", "detail"),
    [
        ("9000", "JPY", "completed", "9000 JPY (49.50 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20)"),
        (
            "2000000000",
            "JPY",
            "rejected",
            "amount: must not exceed 10000000.00 EUR "
            "(this is 11000000.00 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20)",
        ),
        ("100", "XYZ", "rejected", "currency: 'XYZ' is not accepted: the approval policy has"),
        ("9000.5", "JPY", "rejected", "amount: JPY has no minor units"),
    ],
)
def test_an_order_decided_at_once_runs_on_its_snapshot_alone(
    no_babel: None, amount: str, currency: str, status: str, detail: str
) -> None:
    h = order_harness(amount, currency, SNAPSHOT).start()
    assert h.failure is None and h.result["status"] == status
    assert detail in calls_to(h, PUBLISH_STATUS)[0].input["detail"]
    h.assert_deterministic()


def test_an_order_from_before_base_currencies_replays_without_babel(no_babel: None) -> None:
    h = order_harness("9000.00", "JPY", PRE_UPGRADE).start()
    assert h.failure is None
    (req,) = calls_to(h, REQUEST_APPROVAL)
    assert (req.input["tier"], req.input["reason"]) == ("vp", "9000.00 JPY needs vp approval")
    h.assert_deterministic()


def approval_harness(request: dict[str, Any], snapshot: dict[str, Any]) -> WorkflowHarness:
    return approval_harness_for(ApprovalInput(request=request, policy=snapshot))


@pytest.mark.parametrize(
    ("snapshot", "amount", "currency", "valuation"),
    [
        (
            SNAPSHOT,
            "1500000.875",
            "IQD",
            {
                "base_currency": "EUR",
                "base_amount": "990.00",
                "rate": "0.00066",
                "rate_as_of": "2026-11-20",
            },
        ),
        (PRE_UPGRADE, "12000", "SEK", None),
    ],
    ids=["snapshot", "pre-upgrade snapshot"],
)
def test_an_approval_escalates_and_is_decided_on_its_snapshot_alone(
    no_babel: None,
    snapshot: dict[str, Any],
    amount: str,
    currency: str,
    valuation: dict[str, Any] | None,
) -> None:
    request = {
        "request_id": "o-1-s1-manager",
        "order_id": "o-1",
        "customer_id": "c-1",
        "amount": amount,
        "currency": currency,
        "tier": "manager",
        "stage": 1,
        "due_at": (DEFAULT_START + timedelta(days=3)).isoformat(),
        "valuation": valuation,
    }
    h = approval_harness(request, snapshot).start()
    h.advance(timedelta(days=3))
    (nxt,) = calls_to(h, REQUEST_NEXT_STAGE)
    assert nxt.input["tier"] == "vp" and nxt.input["amount"] == amount
    h.raise_event(
        DECISION_EVENT,
        {
            "decision_id": "d-1",
            "order_id": "o-1",
            "approved": True,
            "approver_id": "v-1",
            "approver_role": "vp",
            "decided_at": DEFAULT_START.isoformat(),
        },
    )
    assert h.failure is None and h.result["outcome"] == "approved"
    assert calls_to(h, RECORD_APPROVAL)[-1].input["status"] == "approved"
    h.assert_deterministic()
