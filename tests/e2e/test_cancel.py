"""Cancelling an order on the real stack: the order workflow takes the cancel event while it
waits, the approvals workflow closes the approval, the customer is told, and a finished order
is refused. The cancellation after an escalation is in test_deadlines.py (short deadlines)."""

from __future__ import annotations

import pytest

from tests.e2e.flow import Flow
from tests.e2e.test_control_room import ctl, run_ctl
from tests.stack import eventually

pytestmark = pytest.mark.e2e


def closed(flow: Flow, order_id: str) -> dict:
    """The approval once its workflow has ended it as cancelled."""
    return eventually(
        lambda: (a := flow.approval(order_id)) and a["status"] == "cancelled" and a,
        what=f"the approval of {order_id} to be cancelled",
    )


def test_an_order_waiting_for_its_manager_is_cancelled_from_the_command_line(
    flow: Flow,
) -> None:
    order = flow.place("1700.00")
    flow.pending(order.order_id)
    eventually(
        lambda: (flow.order(order.order_id) or {}).get("status") == "awaiting_approval",
        what="the order to await its approval",
    )
    done = run_ctl(flow.stack, "operator", "cancel", order.order_id, "--reason", "duplicate")
    assert done.returncode == 0, done.stderr
    assert "waiting up to 30s" in done.stderr
    assert done.stdout.startswith(f"order {order.order_id}: cancelled: cancelled by olga")
    shown = flow.order(order.order_id)
    assert shown is not None and shown["status"] == "cancelled"
    assert shown["workflow_status"] == "COMPLETED"
    assert shown["result"]["status"] == "cancelled" and shown["result"]["reason"] == "duplicate"
    approval = closed(flow, order.order_id)
    assert approval["decided_by"] == "olga" and approval["log"][-1]["kind"] == "cancelled"
    inbox = flow.http.get(f"{flow.approvals}/approvals", params={"status": "pending"}).json()
    assert order.order_id not in {r["order_id"] for r in inbox}
    assert flow.customer_statuses(order.order_id, "cancelled")[-1] == "cancelled"
    assert not flow.fulfilment(order.order_id)
    decided = flow.decide(order.order_id, "manager")
    assert decided.status_code == 409 and "already cancelled by olga" in decided.text


def test_a_finished_order_cannot_be_cancelled(flow: Flow) -> None:
    order = flow.place("42.00")
    flow.finished(order.order_id)
    resp = flow.http.post(
        f"{flow.orders}/orders/{order.order_id}/cancel", json={"reason": "too late"}
    )
    assert resp.status_code == 409
    assert resp.json()["detail"] == (
        f"order {order.order_id} is completed: a finished order cannot be cancelled"
    )
    code, out = ctl(flow.stack, "operator", "cancel", order.order_id, "--reason", "again")
    assert code == 4 and "a finished order cannot be cancelled" in out
    refused = flow.http.get(
        f"{flow.orders}/audit", params={"target": order.order_id, "action": "cancel_order"}
    ).json()
    assert [r["outcome"].split(":")[0] for r in refused] == ["refused 409", "refused 409"]
    assert (flow.order(order.order_id) or {})["status"] == "completed"
