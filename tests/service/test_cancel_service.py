"""Cancelling an order over HTTP (orders) and closing its approval from the topic (approvals)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from approvals.app import create_app as create_approvals
from approvals.domain import ApprovalView
from approvals.readmodel import load_view, save_view
from contracts.messages import ApprovalCancelled, ApprovalRequested, Tier
from orders.app import create_app as create_orders
from orders.readmodel import OrderRecord, RecordStatus, save
from plumbing.settings import ServiceSettings
from tests.fakes import bearer
from tests.service.conftest import AppFactory, deliver

ROOT = Path(__file__).resolve().parents[2]
WAITS = [
    {"event_id": 5, "type": "TIMER_CREATED", "waits_for": "approval_outcome", "fire_at": None},
    {"event_id": 6, "type": "TIMER_CREATED", "waits_for": "approval_stage", "fire_at": None},
    {"event_id": 7, "type": "TIMER_CREATED", "waits_for": "cancel", "fire_at": None},
]


@pytest.fixture
def orders(client: AppFactory) -> TestClient:
    return client(create_orders, ServiceSettings(app_id="orders"), who="operator")


def waiting_order(gateway: Any, status: str = "awaiting_approval", wf: str = "RUNNING") -> None:
    save(gateway.state, OrderRecord(order_id="o-1", status=RecordStatus(status)))
    gateway.workflows.add("order-o-1", wf, name="order_workflow")
    gateway.workflows.histories["order-o-1"] = WAITS


def cancel(orders: TestClient, reason: str = "customer withdrew", **kw: Any) -> Any:
    return orders.post("/orders/o-1/cancel", json={"reason": reason}, **kw)


def test_cancel_raises_the_event_into_the_waiting_order_and_is_audited(
    orders: TestClient, gateway: Any
) -> None:
    waiting_order(gateway)
    resp = cancel(orders)
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "cancelling"
    ((iid, name, data),) = gateway.workflows.raised
    assert (iid, name) == ("order-o-1", "cancel")
    assert data["by"] == "olga" and data["reason"] == "customer withdrew"
    # Requested, not taken: the workflow may have moved on before the event reaches it.
    assert resp.json()["detail"].startswith("cancellation requested: its workflow takes it if")
    (rec,) = orders.get("/audit", params={"target": "o-1"}).json()
    assert (rec["action"], rec["actor"]) == ("cancel_order", "olga")
    assert rec["outcome"] == "ok: requested"
    assert rec["reason"] == "customer withdrew"


def test_cancelling_twice_raises_the_event_once(orders: TestClient, gateway: Any) -> None:
    waiting_order(gateway)
    assert cancel(orders).status_code == 202
    again = cancel(orders, "again")
    assert again.status_code == 202 and "already requested by olga" in again.json()["detail"]
    assert len(gateway.workflows.raised) == 1


def test_a_suspended_order_takes_the_cancellation_once_resumed(
    orders: TestClient, gateway: Any
) -> None:
    waiting_order(gateway, wf="SUSPENDED")
    resp = cancel(orders)
    assert resp.status_code == 202 and "once it is resumed" in resp.json()["detail"]


@pytest.mark.parametrize(
    ("status", "wf", "says"),
    [
        ("completed", "COMPLETED", "order o-1 is completed: a finished order cannot be cancelled"),
        ("cancelled", "COMPLETED", "order o-1 is cancelled: a finished order"),
        ("approved", "RUNNING", "was approved and is being fulfilled"),
        ("accepted", "PENDING", "has not started yet"),
        (
            "awaiting_approval",
            "STALLED",
            "workflow is STALLED: it cannot take a cancellation now. An older replica replayed "
            "it during a rollout; it goes on once a newer one takes it: wait for the rollout to "
            "finish and cancel again; if it stays STALLED, terminate its workflow instead",
        ),
    ],
)
def test_an_order_that_cannot_take_a_cancellation_is_409_with_the_reason(
    orders: TestClient, gateway: Any, status: str, wf: str, says: str
) -> None:
    waiting_order(gateway, status, wf)
    resp = cancel(orders)
    assert resp.status_code == 409 and says in resp.json()["detail"]
    assert not gateway.workflows.raised
    (rec,) = orders.get("/audit", params={"target": "o-1"}).json()
    assert rec["outcome"].startswith("refused 409")


def test_an_order_waiting_since_before_cancellation_existed_is_told_to_terminate(
    orders: TestClient, gateway: Any
) -> None:
    waiting_order(gateway)
    gateway.workflows.histories["order-o-1"] = WAITS[:2]  # no cancel waiter
    resp = cancel(orders)
    assert resp.status_code == 409
    assert "started before orders could be cancelled" in resp.json()["detail"]
    assert "POST /workflows/order-o-1/terminate" in resp.json()["detail"]


def test_an_order_not_yet_waiting_takes_the_cancellation_at_its_wait(
    orders: TestClient, gateway: Any
) -> None:
    waiting_order(gateway, "received")
    gateway.workflows.histories["order-o-1"] = []
    assert cancel(orders).status_code == 202


def test_cancel_needs_an_operator_a_reason_and_a_known_order(
    orders: TestClient, gateway: Any
) -> None:
    assert cancel(orders, headers=bearer("viewer")).status_code == 403
    assert cancel(orders).status_code == 404
    waiting_order(gateway)
    empty = cancel(orders, "")
    assert empty.status_code == 422 and "reason" in empty.json()["detail"]
    extra = orders.post("/orders/o-1/cancel", json={"reason": "x", "output": {}})
    assert extra.status_code == 422
    assert not gateway.workflows.raised


def test_an_operator_id_the_approval_cannot_record_is_refused_before_anything_is_raised(
    client: AppFactory, gateway: Any
) -> None:
    """ApprovalCancelled.cancelled_by holds 128 characters; principal ids have no limit. The
    workflow would ignore such a cancel, so the route says so instead of a 202."""
    long = "p" * 129
    tokens = json.loads((ROOT / "secrets" / "dev-secrets.json").read_text())["api-tokens"]
    gateway.secrets.secrets = {"api-tokens": tokens | {"dev-operator-long": f"{long}:operator"}}
    orders = client(create_orders, ServiceSettings(app_id="orders"), who="operator")
    waiting_order(gateway)
    resp = cancel(orders, headers={"Authorization": "Bearer dev-operator-long"})
    assert resp.status_code == 409 and "cancelled_by" in resp.json()["detail"], resp.text
    assert not gateway.workflows.raised and gateway.state.get("order-cancel:o-1") == (None, None)


def test_a_failed_raise_lets_the_next_cancel_try_again(orders: TestClient, gateway: Any) -> None:
    waiting_order(gateway)
    gateway.workflows.failing.add("raise_event")
    assert cancel(orders).status_code == 503
    gateway.workflows.failing.clear()
    assert cancel(orders).status_code == 202
    assert len(gateway.workflows.raised) == 1


def test_the_cancel_is_recorded_only_once_raised(
    orders: TestClient, gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between the two steps must leave no record, or every later cancel would be
    answered "already requested" and never raise: the raise comes first."""
    waiting_order(gateway)
    steps: list[str] = []
    claim, raise_event = gateway.state.claim, gateway.workflows.raise_event

    def claiming(key: str, value: Any) -> bool:
        steps.append(key.split(":")[0])
        return bool(claim(key, value))

    def raising(*args: Any) -> None:
        steps.append("raise")
        raise_event(*args)

    monkeypatch.setattr(gateway.state, "claim", claiming)
    monkeypatch.setattr(gateway.workflows, "raise_event", raising)
    assert cancel(orders).status_code == 202
    assert [s for s in steps if s in ("raise", "order-cancel")] == ["raise", "order-cancel"]


def test_a_cancel_raised_but_not_recorded_is_still_requested(
    orders: TestClient, gateway: Any
) -> None:
    waiting_order(gateway)
    gateway.state.refuse_writes = ("order-cancel:",)
    resp = cancel(orders)
    assert resp.status_code == 202 and "cancellation requested" in resp.json()["detail"]
    assert len(gateway.workflows.raised) == 1


NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)


@pytest.fixture
def approvals(client: AppFactory) -> TestClient:
    return client(create_approvals, ServiceSettings(app_id="approvals", decision_hold_s=60))


def view(status: str, **over: Any) -> ApprovalView:
    return ApprovalView.model_validate(
        {
            "order_id": "o-1",
            "customer_id": "c",
            "amount": "1.00",
            "currency": "EUR",
            "status": status,
            "tier": Tier.MANAGER,
            "stage": 1,
            "due_at": NOW,
            **over,
        }
    )


def cancelled(at: datetime | None = None) -> ApprovalCancelled:
    return ApprovalCancelled(
        order_id="o-1",
        cancelled_by="olga",
        reason="customer withdrew",
        cancelled_at=at or datetime.now(UTC),
    )


def test_a_cancellation_is_raised_into_the_open_approval(approvals: TestClient, gateway) -> None:
    gateway.workflows.add("approval-o-1", name="approval_workflow")
    assert deliver(approvals, "approval-cancellations", cancelled())["status"] == "SUCCESS"
    ((iid, name, data),) = gateway.workflows.raised
    assert (iid, name, data["cancelled_by"]) == ("approval-o-1", "cancel", "olga")


def request() -> ApprovalRequested:
    return ApprovalRequested(
        request_id=ApprovalRequested.make_id("o-1", 1, Tier.MANAGER),
        order_id="o-1",
        customer_id="c",
        amount="1200.00",
        currency="EUR",
        tier=Tier.MANAGER,
        stage=1,
        due_at=datetime.now(UTC) + timedelta(days=1),
    )


def test_a_cancellation_before_its_approval_starts_the_approval_closed_however_late(
    approvals: TestClient, gateway: Any
) -> None:
    # Made long before (an outage longer than DECISION_HOLD): kept all the same, not dropped.
    early = deliver(approvals, "approval-cancellations", cancelled(NOW))
    assert early["status"] == "SUCCESS" and "will start closed" in early["reason"]
    assert not gateway.workflows.raised and not gateway.workflows.scheduled
    started = deliver(approvals, "approval-requests", request())
    assert started["status"] == "SUCCESS" and "closed" in started["reason"]
    ((_, iid, _),) = gateway.workflows.scheduled
    ((raised_to, name, data),) = gateway.workflows.raised
    assert (iid, raised_to, name) == ("approval-o-1", "approval-o-1", "cancel")
    assert data["cancelled_by"] == "olga" and data["reason"] == "customer withdrew"
    # A redelivered cancellation, and a redelivered request once the approval has ended,
    # start and raise nothing more.
    gateway.workflows._move("approval-o-1", "COMPLETED")
    assert deliver(approvals, "approval-cancellations", cancelled())["status"] == "SUCCESS"
    assert deliver(approvals, "approval-requests", request())["status"] == "SUCCESS"
    assert len(gateway.workflows.scheduled) == 1 and len(gateway.workflows.raised) == 1


def test_a_cancellation_after_its_approval_started_is_raised_into_it(
    approvals: TestClient, gateway: Any
) -> None:
    assert deliver(approvals, "approval-requests", request())["status"] == "SUCCESS"
    assert deliver(approvals, "approval-cancellations", cancelled())["status"] == "SUCCESS"
    ((iid, name, _),) = gateway.workflows.raised
    assert (iid, name) == ("approval-o-1", "cancel")


def test_an_approval_started_while_the_cancellation_is_marked_is_still_closed(
    approvals: TestClient, gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request's delivery schedules the approval and finds no marker yet, between the
    cancellation's first look (no approval) and its marker: the cancellation looks again."""
    claim = gateway.state.claim

    def meanwhile(key: str, value: Any) -> bool:
        if key.startswith("approval-cancelled:"):
            assert deliver(approvals, "approval-requests", request())["reason"] == ""
        return bool(claim(key, value))

    monkeypatch.setattr(gateway.state, "claim", meanwhile)
    assert deliver(approvals, "approval-cancellations", cancelled())["status"] == "SUCCESS"
    assert len(gateway.workflows.scheduled) == 1
    ((iid, name, _),) = gateway.workflows.raised
    assert (iid, name) == ("approval-o-1", "cancel")


def test_a_cancellation_of_a_finished_approval_changes_nothing(
    approvals: TestClient, gateway
) -> None:
    gateway.workflows.add("approval-o-1", "COMPLETED", name="approval_workflow")
    answer = deliver(approvals, "approval-cancellations", cancelled())
    assert answer["status"] == "SUCCESS" and "nothing to close" in answer["reason"]
    gateway.workflows.instances.clear()  # purged: the view still says how it ended
    save_view(gateway.state, view("approved"))
    answer = deliver(approvals, "approval-cancellations", cancelled())
    assert answer["status"] == "SUCCESS" and "already approved" in answer["reason"]
    assert not gateway.workflows.raised


def test_only_orders_may_cancel_an_approval(approvals: TestClient, gateway) -> None:
    gateway.workflows.add("approval-o-1", name="approval_workflow")
    unsigned = deliver(approvals, "approval-cancellations", cancelled(), signed=False)
    assert unsigned["status"] == "DROP" and not gateway.workflows.raised


def test_a_cancelled_approval_leaves_the_pending_inbox(approvals: TestClient, gateway) -> None:
    save_view(gateway.state, view("cancelled", decided_by="olga", reason="customer withdrew"))
    assert approvals.get("/approvals", params={"status": "pending"}).json() == []
    (row,) = approvals.get(
        "/approvals", params={"status": "cancelled"}, headers=bearer("manager")
    ).json()
    assert row["why_not"] == "already cancelled"
    post = approvals.post(
        "/approvals/o-1/decisions", json={"approved": True}, headers=bearer("manager")
    )
    assert post.status_code == 409 and "already cancelled by olga" in post.json()["detail"]
    stored = load_view(gateway.state, "o-1")
    assert stored is not None and stored.status == "cancelled"


def test_the_request_id_is_sent_back_and_audited(orders: TestClient, gateway: Any) -> None:
    """Every answer carries the request's id (the caller's, or a new one); the audit record of
    what the request did carries it too, so a caller's report finds its record."""
    waiting_order(gateway)
    resp = cancel(orders, headers={"x-request-id": "ticket-4711"})
    assert resp.status_code == 202 and resp.headers["x-request-id"] == "ticket-4711"
    (rec,) = orders.get("/audit", params={"target": "o-1"}).json()
    assert rec["request_id"] == "ticket-4711"
    made = orders.get("/healthz").headers["x-request-id"]
    assert len(made) == 32 and made != orders.get("/healthz").headers["x-request-id"]
