"""A new user's first hour (issue 11): the README tour's reads, as a user pastes them, on the
real stack: no 404 or year-0001 right after a POST, the custom status without payloads, the
order following its approval's escalation, one timestamp format, outcomes that outlive purge."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.flow import Flow
from tests.e2e.test_control_room import ctl
from tests.fakes import bearer
from tests.stack import unique

pytestmark = pytest.mark.e2e
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?$")
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def timestamps(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in timestamps(v)]
    if isinstance(value, list):
        return [s for v in value for s in timestamps(v)]
    return [value] if isinstance(value, str) and STAMP.match(value) else []


def post_order(flow: Flow, order_id: str, amount: str) -> None:
    resp = flow.http.post(
        f"{flow.orders}/orders",
        json={"order_id": order_id, "customer_id": "alice", "amount": amount, "currency": "EUR"},
        headers=bearer("operator"),
    )
    assert resp.status_code == 202, resp.text


def test_the_tour_pasted_as_one_block_reads_true_at_every_step(flow: Flow) -> None:
    small, large = unique("tour-1"), unique("tour-2")
    post_order(flow, small, "120.00")
    # Straight after the POST: no 404, no PENDING with year-0001 times.
    first = flow.http.get(f"{flow.orders}/orders/{small}", params={"wait": 30})
    assert first.status_code == 200, first.text
    assert first.json()["status"] in {"accepted", "received", "approved", "completed"}
    assert "0001-01-01" not in first.text
    done = flow.http.get(
        f"{flow.orders}/orders/{small}", params={"wait": 30, "until": "completed"}
    ).json()
    assert (done["status"], done["reached"], done["result"]["reason"]) == (
        "completed",
        True,
        "auto_approved",
    )

    post_order(flow, large, "1200.00")
    approval = flow.http.get(f"{flow.approvals}/approvals/{large}", params={"wait": 30})
    assert approval.status_code == 200 and approval.json()["tier"] == "manager"
    decided = flow.decide(large, "manager", reason="within budget")
    assert decided.status_code == 202, decided.text
    order = flow.http.get(
        f"{flow.orders}/orders/{large}", params={"wait": 30, "until": "completed"}
    ).json()
    assert order["status"] == "completed" and order["result"]["decided_by"] == "bob"
    assert order["approval"]["tier"] == "manager" and order["amount_text"] == "1200.00 EUR"

    # Every time shown on the way is RFC 3339 with Z.
    bodies = [
        order,
        flow.http.get(f"{flow.orders}/workflows/order-{large}").json(),
        flow.http.get(f"{flow.orders}/workflows/order-{large}/history").json(),
        flow.http.get(f"{flow.orders}/workflows", params={"limit": 5}).json(),
        flow.http.get(f"{flow.approvals}/approvals/{large}").json(),
        flow.http.get(f"{flow.approvals}/approvals", params={"status": "approved"}).json(),
    ]
    shown = [t for body in bodies for t in timestamps(body)]
    assert len(shown) > 10
    assert [t for t in shown if not RFC3339_Z.match(t)] == []


def test_an_order_published_by_a_shop_can_be_waited_for_through_the_cli(flow: Flow) -> None:
    order = flow.place("9000.00")
    code, approval = ctl(flow.stack, "viewer", "approval", "get", order.order_id, "--wait", "30")
    assert code == 0 and (approval["tier"], approval["stage"]) == ("vp", 1)
    # until: this status or a later one
    code, shown = ctl(
        flow.stack,
        "viewer",
        "order",
        "get",
        order.order_id,
        "--wait",
        "30",
        "--until",
        "awaiting_approval",
    )
    assert code == 0 and shown["reached"] is True
    assert shown["status"] == "awaiting_approval"
    assert shown["approval"]["tier"] == "vp" and shown["approval"]["due_at"].endswith("Z")


def test_the_custom_status_comes_without_asking_for_payloads(flow: Flow) -> None:
    order = flow.place("70.00")
    flow.finished(order.order_id)
    code, wf = ctl(flow.stack, "viewer", "get", f"order-{order.order_id}")
    assert code == 0 and "input" not in wf and "output" not in wf
    assert wf["custom_status"] == "completed: auto_approved"


def test_a_purged_order_still_reads_with_its_outcome(flow: Flow) -> None:
    order = flow.place("80.00")
    flow.finished(order.order_id)
    assert ctl(flow.stack, "operator", "purge", f"order-{order.order_id}")[0] == 0
    assert ctl(flow.stack, "viewer", "get", f"order-{order.order_id}")[0] == 3
    code, shown = ctl(flow.stack, "viewer", "order", "get", order.order_id)
    assert code == 0
    assert (shown["status"], shown["workflow_status"], shown["workflow"]) == (
        "completed",
        None,
        None,
    )
    assert shown["result"]["reason"] == "auto_approved" and shown["amount_text"] == "80.00 EUR"


def test_a_terminated_then_purged_order_says_who_stopped_it(flow: Flow) -> None:
    order = flow.place("1500.00")
    flow.pending(order.order_id)
    iid = f"order-{order.order_id}"
    stop = ["terminate", iid, "--reason", "duplicate order", "--yes"]
    assert ctl(flow.stack, "operator", *stop)[0] == 0
    assert ctl(flow.stack, "operator", "purge", iid)[0] == 0
    shown = flow.order(order.order_id)
    assert shown is not None and shown["status"] == "terminated"
    assert shown["terminated"] == {"terminated": True, "by": "olga", "reason": "duplicate order"}
    assert shown["result"] is None and shown["workflow_status"] is None
