"""Every approval path through the real topics and HTTP APIs (deadlines: test_deadlines.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts.messages import DecisionSubmitted
from tests.e2e.flow import Flow
from tests.stack import WebhookSink, eventually, unique

pytestmark = pytest.mark.e2e


def test_manager_approves(flow: Flow, webhook: WebhookSink) -> None:
    order = flow.place("1200.00")
    flow.pending(order.order_id)
    resp = flow.decide(order.order_id, "manager", reason="fine")
    assert resp.status_code == 202, resp.text
    assert resp.json()["decision_id"].startswith("d-")
    state = flow.finished(order.order_id)
    assert state["result"] == {
        "order_id": order.order_id,
        "status": "completed",
        "reason": "fine",
        "decided_by": "bob",
        "tier": "manager",
        "valuation": {
            "base_currency": "EUR",
            "base_amount": "1200.00",
            "rate": "1",
            "rate_as_of": None,
        },
    }
    assert flow.customer_statuses(order.order_id, "completed", expect=4) == [
        "received",
        "awaiting_approval",
        "approved",
        "completed",
    ]
    approvers = eventually(
        lambda: [
            n for n in flow.notifications(order.order_id) if n["audience"] == "approvers:manager"
        ],
        what="the manager to be notified",
    )
    assert len(approvers) == 1 and "needs manager approval" in approvers[0]["text"]
    hooks = eventually(
        lambda: (got := webhook.for_order(order.order_id)) and len(got) >= 5 and got,
        what="approver and customer notifications on the webhook",
    )
    paths = sorted(p for p, _ in hooks)
    assert paths == ["/hooks/approvers/manager"] + ["/hooks/customer"] * 4


def test_manager_rejects(flow: Flow, webhook: WebhookSink) -> None:
    order = flow.place("800.00")
    flow.pending(order.order_id)
    resp = flow.decide(order.order_id, "manager", approved=False, reason="over budget")
    assert resp.status_code == 202
    state = flow.finished(order.order_id)
    assert state["result"]["status"] == "rejected"
    assert state["result"]["reason"] == "over budget"
    assert flow.customer_statuses(order.order_id, "rejected")[-1] == "rejected"
    # Who decided and why stay internal: the customer gets a fixed text per status.
    told = eventually(
        lambda: [
            n
            for p, n in webhook.for_order(order.order_id)
            if p == "/hooks/customer" and n["id"].endswith("-rejected")
        ],
        what="the customer's rejection on the webhook",
    )
    assert told[0]["text"] == f"Your order {order.order_id} was not approved."
    customer = [n for n in flow.notifications(order.order_id) if n["audience"] == "customer"]
    assert customer and not any("bob" in str(n) or "over budget" in str(n) for n in customer)


def test_vp_approves_a_large_order_and_a_manager_gets_403(flow: Flow) -> None:
    order = flow.place("9000.00")
    flow.pending(order.order_id, tier="vp")
    refused = flow.decide(order.order_id, "manager")
    assert refused.status_code == 403
    assert "manager may not decide a VP stage" in refused.json()["detail"]
    assert flow.decide(order.order_id, "vp").status_code == 202
    assert flow.finished(order.order_id)["result"]["decided_by"] == "val"


def test_orders_in_other_currencies_are_tiered_on_their_value_in_euros(flow: Flow) -> None:
    yen = flow.place("90000", currency="JPY")  # 495.00 EUR: approved at once
    pounds = flow.place("4900", currency="GBP")  # 5586.00 EUR: a VP's, as 4,900 EUR is not
    view = flow.pending(pounds.order_id, tier="vp")
    assert (view["amount"], view["currency"]) == ("4900.00", "GBP")
    assert view["valuation"] == {
        "base_currency": "EUR",
        "base_amount": "5586.00",
        "rate": "1.14",
        "rate_as_of": "2026-11-20",
    }
    text = "4900.00 GBP (5586.00 EUR; 1 GBP = 1.14 EUR as of 2026-11-20)"
    assert view["amount_text"] == text and view["log"][0]["note"] == f"{text} needs vp approval"
    assert flow.decide(pounds.order_id, "vp").status_code == 202
    assert flow.finished(pounds.order_id)["result"]["decided_by"] == "val"
    result = flow.finished(yen.order_id)["result"]
    assert (result["reason"], result["valuation"]["base_amount"]) == ("auto_approved", "495.00")
    approvers = eventually(
        lambda: [n for n in flow.notifications(pounds.order_id) if n["audience"] == "approvers:vp"],
        what="the VP to be notified",
    )
    assert approvers[0]["text"].startswith(f"Order {pounds.order_id} for {text} needs vp")


def test_the_tier_is_decided_on_the_exact_value_not_the_one_shown(flow: Flow) -> None:
    yen = flow.place("909091", currency="JPY")  # 5000.0005 EUR, shown as 5000.00 EUR
    view = flow.pending(yen.order_id, tier="vp")
    assert view["stage"] == 1
    assert view["amount_text"] == "909091 JPY (5000.00 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20)"
    assert flow.decide(yen.order_id, "vp").status_code == 202
    assert flow.finished(yen.order_id)["result"]["tier"] == "vp"


def test_decision_published_before_the_approval_exists_is_held_then_applied(flow: Flow) -> None:
    order_id = unique("o")
    early = DecisionSubmitted(
        decision_id=unique("d"),
        order_id=order_id,
        approved=True,
        approver_id="vp-9",
        approver_role="vp",
        reason="pre-approved",
        decided_at=datetime.now(UTC),
    )
    flow.publish(early, "decisions", via="approvals")
    flow.place("3000.00", order_id=order_id)
    state = flow.finished(order_id)
    assert state["result"]["decided_by"] == "vp-9"


def test_same_decision_twice_has_one_effect_and_a_published_manager_vp_decision_is_ignored(
    flow: Flow,
) -> None:
    order = flow.place("6000.00")
    flow.pending(order.order_id, tier="vp")
    sneaky = DecisionSubmitted(
        decision_id=unique("d"),
        order_id=order.order_id,
        approved=True,
        approver_id="mgr-7",
        approver_role="manager",
        decided_at=datetime.now(UTC),
    )
    flow.publish(sneaky, "decisions", via="approvals")
    flow.publish(sneaky, "decisions", via="approvals")
    # Both deliveries were handled, in whatever order they came: one raised, one a duplicate.
    answers = flow.deliveries("approvals", "decisions", sneaky.decision_id, expect=2)
    assert sorted(answers) == ["SUCCESS", "SUCCESS (duplicate decision)"]
    eventually(
        lambda: any(
            e["kind"] == "ignored" for e in (flow.approval(order.order_id) or {}).get("log", [])
        ),
        what="the manager's decision to be logged as ignored",
    )
    assert flow.decide(order.order_id, "vp", approved=False).status_code == 202
    state = flow.finished(order.order_id)
    assert state["result"]["status"] == "rejected"
    log = flow.approval(order.order_id)["log"]  # type: ignore[index]
    assert [e["kind"] for e in log] == ["requested", "ignored", "accepted"]


def test_same_order_published_three_times_runs_one_workflow(flow: Flow) -> None:
    order = flow.place("40.00")
    first = flow.finished(order.order_id)
    flow.publish(order, "orders")
    flow.publish(order, "orders")
    # Three deliveries, each answered, however they interleave: one start, two duplicates.
    answers = flow.deliveries("orders", "orders", order.order_id, expect=3)
    assert sorted(answers) == ["SUCCESS"] + ["SUCCESS (duplicate order)"] * 2
    again = flow.order(order.order_id)
    assert again is not None and again["workflow"]["created_at"] == first["workflow"]["created_at"]
    assert again["accepted_at"] == first["accepted_at"]
    told = flow.customer_statuses(order.order_id, "completed", expect=3)
    assert told == ["received", "approved", "completed"]
    assert len(flow.notifications(order.order_id)) == len(told)  # and nothing more
