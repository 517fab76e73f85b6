"""Reading an order and an approval as a new user meets them (issue 11): records that outlive
the workflow, a way to wait for an eventually consistent read, the order following its
approval's escalation, one timestamp format. Fakes at the gateway seam only."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient

from approvals.app import create_app as approvals_app
from approvals.domain import ApprovalView
from approvals.readmodel import save_view
from contracts.messages import ApprovalRequested, OrderPlaced, Tier
from orders.activities import make_activities
from orders.app import create_app as orders_app
from orders.workflows import APPROVAL_STAGE_EVENT, PUBLISH_STATUS, RECORD_ORDER
from plumbing.settings import ServiceSettings
from tests.fakes import dev_signer
from tests.service.conftest import AppFactory, deliver
from tests.service.test_management_service import wait_job

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ORDER = OrderPlaced(
    order_id="o-1", customer_id="c-1", amount="1200.00", currency="EUR", placed_at=NOW
)
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?$")
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def orders(client: AppFactory) -> TestClient:
    return client(orders_app, ServiceSettings(app_id="orders"), who="operator")


@pytest.fixture
def approvals(client: AppFactory) -> TestClient:
    return client(approvals_app, ServiceSettings(app_id="approvals"), who="viewer")


def step(gateway, status: str, at: datetime = NOW, detail: str = "", **record: Any) -> None:
    """Run the order workflow's status activity, as the workflow would at that step."""
    data = {"order_id": "o-1", "status": status, "at": at.isoformat(), "detail": detail}
    make_activities(gateway)[PUBLISH_STATUS](None, data | {"record": record})


def stage(n: int, tier: Tier = Tier.VP, order_id: str = "o-1") -> ApprovalRequested:
    return ApprovalRequested(
        request_id=ApprovalRequested.make_id(order_id, n, tier),
        order_id=order_id,
        customer_id="c-1",
        amount="1200.00",
        currency="EUR",
        tier=tier,
        stage=n,
        due_at=NOW + timedelta(days=5),
        reason="the manager did not decide in time; escalated to a VP",
    )


def timestamps(value: Any) -> list[str]:
    """Every string in a JSON value that is a date and time."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in timestamps(v)]
    if isinstance(value, list):
        return [s for v in value for s in timestamps(v)]
    return [value] if isinstance(value, str) and STAMP.match(value) else []


# An order just placed, before and after its workflow starts


def test_an_order_accepted_but_not_started_reads_as_such_with_null_times(
    orders: TestClient, gateway
) -> None:
    assert deliver(orders, "orders", ORDER)["status"] == "SUCCESS"
    # Dapr reports a scheduled workflow as PENDING, with year-1 times the gateway drops.
    wf = gateway.workflows.instances["order-o-1"]
    gateway.workflows.instances["order-o-1"] = replace(
        wf, status="PENDING", created_at=None, updated_at=None
    )
    shown = orders.get("/orders/o-1").json()
    assert shown["status"] == "accepted" and shown["workflow_status"] == "PENDING"
    assert shown["workflow"]["created_at"] is None and shown["workflow"]["updated_at"] is None
    assert (shown["amount"], shown["amount_text"], shown["customer_id"]) == (
        "1200.00",
        "1200.00 EUR",
        "c-1",
    )
    assert shown["placed_at"] == "2026-11-23T10:00:00Z"
    assert "0001" not in str(shown)


def test_an_order_is_recorded_before_its_workflow_is_scheduled(orders: TestClient, gateway) -> None:
    def busy(*_: object) -> str:
        raise RuntimeError("scheduler not ready")

    gateway.workflows.schedule = busy
    assert deliver(orders, "orders", ORDER)["status"] == "RETRY"
    shown = orders.get("/orders/o-1").json()
    assert shown["status"] == "accepted"
    assert shown["workflow_status"] is None and shown["workflow"] is None


def test_a_redelivered_order_does_not_take_its_record_back(orders: TestClient, gateway) -> None:
    deliver(orders, "orders", ORDER)
    step(gateway, "received", amount_text="1200.00 EUR")
    assert deliver(orders, "orders", ORDER)["reason"] == "duplicate order"
    assert orders.get("/orders/o-1").json()["status"] == "received"


# Waiting for an eventually consistent read


def appearing_after(gateway, key: str, reads: int, then: Any) -> None:
    """The state store answers "no such key" for `key` `reads` times, then runs `then` (a
    subscription or activity catching up) before answering: what a reader meets right after
    publishing. Only reads of `key` count."""
    real_get, seen = gateway.state.get, {"n": 0}

    def get(k: str) -> tuple[Any, Any]:
        if k == key:
            seen["n"] += 1
            if seen["n"] <= reads:
                return None, None
            if seen["n"] == reads + 1:
                then()
        return real_get(k)

    gateway.state.get = get


def test_without_wait_a_just_placed_order_is_404_with_wait_it_is_there(
    orders: TestClient, gateway
) -> None:
    appearing_after(gateway, "order:o-1", 2, lambda: deliver(orders, "orders", ORDER))
    missing = orders.get("/orders/o-1")
    assert missing.status_code == 404 and missing.json() == {"detail": "no order 'o-1'"}
    shown = orders.get("/orders/o-1", params={"wait": 10})
    assert shown.status_code == 200 and shown.json()["status"] in ("accepted", "received")


def test_wait_until_a_status_polls_until_the_order_reaches_it(orders: TestClient, gateway) -> None:
    deliver(orders, "orders", ORDER)
    steps = iter(
        [
            lambda: step(gateway, "received"),
            lambda: step(gateway, "approved", detail="by policy: auto_approved"),
            lambda: step(gateway, "completed", result={"status": "completed", "reason": "ok"}),
        ]
    )
    real_get = gateway.state.get

    def get(k: str) -> tuple[Any, Any]:
        if k == "order:o-1":
            next(steps, lambda: None)()
        return real_get(k)

    gateway.state.get = get
    shown = orders.get("/orders/o-1", params={"wait": 10, "until": "completed"}).json()
    assert shown["status"] == "completed" and shown["result"]["reason"] == "ok"
    assert shown["reached"] is True


def test_wait_until_stops_at_an_end_the_order_will_not_leave(orders: TestClient, gateway) -> None:
    deliver(orders, "orders", ORDER)
    step(gateway, "rejected", detail="over budget", result={"status": "rejected"})
    shown = orders.get("/orders/o-1", params={"wait": 30, "until": "completed"})
    assert shown.status_code == 200 and shown.json()["status"] == "rejected"
    # The wait is over (it will never be completed), but it did not get there.
    assert (shown.json()["reached"], shown.json()["ended"]) == (False, True)
    rejected = orders.get("/orders/o-1", params={"wait": 1, "until": "rejected"}).json()
    assert (rejected["reached"], rejected["ended"]) == (True, True)
    approved = orders.get("/orders/o-1", params={"wait": 1, "until": "approved"}).json()
    assert approved["reached"] is False  # rejected is not past approved


def test_a_wait_that_runs_out_answers_what_there_is(orders: TestClient, gateway) -> None:
    deliver(orders, "orders", ORDER)
    shown = orders.get("/orders/o-1", params={"wait": 0.3, "until": "completed"})
    assert shown.status_code == 200 and shown.json()["status"] == "accepted"
    assert (shown.json()["reached"], shown.json()["ended"]) == (False, False)
    assert "reached" not in orders.get("/orders/o-1").json()
    gone = orders.get("/orders/o-2", params={"wait": 0.3})
    assert gone.status_code == 404 and gone.json()["detail"] == "no order 'o-2' after waiting 0.3s"


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"wait": 61}, "query.wait: Input should be less than or equal to 60"),
        ({"wait": -1}, "query.wait: Input should be greater than or equal to 0"),
        ({"wait": "soon"}, "query.wait: Input should be a valid number"),
        ({"wait": 5, "until": "shipped"}, "query.until: Input should be 'accepted', 'received'"),
    ],
)
def test_a_bad_wait_is_a_clear_422(orders: TestClient, params: dict, says: str) -> None:
    resp = orders.get("/orders/o-1", params=params)
    assert resp.status_code == 422 and resp.json()["detail"].startswith(says)


def test_an_approval_just_requested_can_be_waited_for(approvals: TestClient, gateway) -> None:
    pending = ApprovalView(
        order_id="o-1",
        customer_id="c-1",
        amount="1200.00",
        currency="EUR",
        status="pending",
        tier=Tier.MANAGER,
        stage=1,
        due_at=NOW,
    )
    appearing_after(gateway, "approval:o-1", 2, lambda: save_view(gateway.state, pending))
    assert approvals.get("/approvals/o-1").status_code == 404
    shown = approvals.get("/approvals/o-1", params={"wait": 10})
    assert shown.status_code == 200 and shown.json()["tier"] == "manager"
    late = approvals.get("/approvals/o-2", params={"wait": 0.3})
    assert late.status_code == 404 and "after waiting 0.3s" in late.json()["detail"]
    assert approvals.get("/approvals/o-1", params={"wait": 100}).status_code == 422


# The order follows its approval's escalation


def test_a_signed_later_stage_is_raised_into_the_order_workflow(
    orders: TestClient, gateway
) -> None:
    deliver(orders, "orders", ORDER)
    answer = deliver(orders, "approval-requests", stage(2), signed=dev_signer())
    assert answer == {"status": "SUCCESS", "reason": ""}
    ((iid, event, data),) = gateway.workflows.raised
    assert (iid, event) == ("order-o-1", APPROVAL_STAGE_EVENT)
    assert (data["stage"], data["tier"]) == (2, "vp")


def test_stage_one_is_the_orders_app_s_own_and_is_not_followed(orders: TestClient, gateway) -> None:
    deliver(orders, "orders", ORDER)
    for signed in (True, False):  # signed by orders, as it sends it, or forged by a shop
        answer = deliver(orders, "approval-requests", stage(1, Tier.MANAGER), signed=signed)
        assert answer == {"status": "SUCCESS", "reason": "stage 1 is this app's own request"}
    assert not gateway.workflows.raised


def test_an_unsigned_later_stage_is_dropped_and_audited(orders: TestClient, gateway) -> None:
    deliver(orders, "orders", ORDER)
    answer = deliver(orders, "approval-requests", stage(2), signed=False)
    assert answer["status"] == "DROP"
    assert "ApprovalRequested refused: unsigned" in answer["reason"]
    assert not gateway.workflows.raised
    (entry,) = [
        e for e in orders.get("/audit").json() if e["action"] == "deliver approval-requests"
    ]
    assert entry["outcome"].startswith("refused: ApprovalRequested refused: unsigned")


def test_a_later_stage_signed_by_the_orders_app_is_not_an_escalation(
    orders: TestClient, gateway
) -> None:
    deliver(orders, "orders", ORDER)
    answer = deliver(orders, "approval-requests", stage(2), signed=dev_signer("orders"))
    assert answer["status"] == "DROP" and "not trusted" in answer["reason"]
    assert not gateway.workflows.raised


def test_a_later_stage_of_an_order_that_ended_changes_nothing(orders: TestClient, gateway) -> None:
    deliver(orders, "orders", ORDER)
    gateway.workflows.instances["order-o-1"] = replace(
        gateway.workflows.instances["order-o-1"], status="COMPLETED"
    )
    answer = deliver(orders, "approval-requests", stage(2), signed=dev_signer())
    assert answer["reason"] == "order-o-1 already completed" and not gateway.workflows.raised


def test_the_order_reads_its_approval_s_current_stage_tier_and_due_time(
    orders: TestClient, gateway
) -> None:
    deliver(orders, "orders", ORDER)
    first_due = "2026-11-26T10:00:00Z"
    step(gateway, "received")
    step(
        gateway,
        "awaiting_approval",
        detail=f"manager approval due {first_due}",
        approval={"stage": 1, "tier": "manager", "due_at": first_due},
    )
    shown = orders.get("/orders/o-1").json()
    assert shown["approval"] == {"stage": 1, "tier": "manager", "due_at": first_due}
    # What the workflow records when the approvals service announces stage 2 (unit-tested).
    escalated = {
        "order_id": "o-1",
        "status": "awaiting_approval",
        "detail": "vp approval due 2026-12-01T10:00:00Z (stage 2): escalated",
        "approval": {"stage": 2, "tier": "vp", "due_at": "2026-12-01T10:00:00+00:00"},
        "updated_at": "2026-11-26T10:00:01Z",
    }
    make_activities(gateway)[RECORD_ORDER](None, escalated)
    make_activities(gateway)[RECORD_ORDER](None, escalated | {"approval": shown["approval"]})
    shown = orders.get("/orders/o-1").json()
    assert shown["status"] == "awaiting_approval"
    assert shown["approval"] == {"stage": 2, "tier": "vp", "due_at": "2026-12-01T10:00:00Z"}
    assert shown["detail"].startswith("vp approval due 2026-12-01T10:00:00Z (stage 2)")


# One timestamp format


def test_every_time_the_apis_show_is_rfc3339_with_z(
    orders: TestClient, approvals: TestClient, gateway
) -> None:
    deliver(
        orders,
        "orders",
        ORDER.model_copy(update={"placed_at": NOW.astimezone(timezone(timedelta(hours=2)))}),
    )
    step(gateway, "received", at=NOW.astimezone(timezone(timedelta(hours=-5))))
    wf = gateway.workflows.instances["order-o-1"]
    plus_two = timezone(timedelta(hours=2))
    gateway.workflows.instances["order-o-1"] = replace(
        wf, created_at=NOW.astimezone(plus_two), updated_at=NOW.astimezone(plus_two)
    )
    orders.post("/workflows/order-o-1/terminate", json={"reason": "test"})
    deliver(orders, "orders", b"{broken")
    orders.post("/deadletters/orders", content=b"{broken")
    job = orders.post("/workflows/jobs", json={"action": "purge", "dry_run": True})
    save_view(
        gateway.state,
        ApprovalView(
            order_id="o-1",
            customer_id="c-1",
            amount="1200.00",
            currency="EUR",
            status="pending",
            tier=Tier.MANAGER,
            stage=1,
            due_at=NOW.astimezone(plus_two),
        ),
    )
    seen = []
    for client, path in [
        (orders, "/orders/o-1"),
        (orders, "/workflows/order-o-1"),
        (orders, "/workflows"),
        (orders, "/workflows/order-o-1/wait?timeout=1"),
        (orders, "/deadletters"),
        (orders, "/audit"),
        (approvals, "/approvals"),
        (approvals, "/approvals/o-1"),
    ]:
        body = client.get(path).json()
        seen += [(path, t) for t in timestamps(body)]
    seen += [("job", t) for t in timestamps(job.json())]
    assert {p for p, _ in seen} >= {"/orders/o-1", "/workflows/order-o-1", "/approvals"}
    assert [(p, t) for p, t in seen if not RFC3339_Z.match(t)] == []


# Purging keeps the order's outcome


def test_purging_a_completed_order_keeps_its_outcome(orders: TestClient, gateway) -> None:
    deliver(orders, "orders", ORDER)
    result = {"order_id": "o-1", "status": "completed", "reason": "fine", "decided_by": "bob"}
    step(gateway, "received", amount_text="1200.00 EUR")
    step(gateway, "completed", result=result)
    gateway.workflows.instances["order-o-1"] = replace(
        gateway.workflows.instances["order-o-1"], status="COMPLETED"
    )
    assert orders.delete("/workflows/order-o-1").status_code == 200
    assert orders.get("/workflows/order-o-1").status_code == 404
    shown = orders.get("/orders/o-1")
    assert shown.status_code == 200
    body = shown.json()
    assert (body["status"], body["result"], body["amount_text"]) == (
        "completed",
        result,
        "1200.00 EUR",
    )
    assert body["workflow_status"] is None and body["workflow"] is None


def test_purging_a_terminated_order_keeps_who_stopped_it_and_why(
    orders: TestClient, gateway
) -> None:
    deliver(orders, "orders", ORDER)
    step(gateway, "received")
    orders.post("/workflows/order-o-1/terminate", json={"reason": "customer called"})
    assert orders.get("/orders/o-1").json()["status"] == "terminated"
    assert orders.delete("/workflows/order-o-1").status_code == 200
    body = orders.get("/orders/o-1").json()
    assert body["status"] == "terminated" and body["result"] is None
    assert body["terminated"] == {"terminated": True, "by": "olga", "reason": "customer called"}
    assert body["detail"] == "workflow terminated by olga: customer called"


def test_a_bulk_purge_keeps_every_order_s_outcome(client: AppFactory, gateway) -> None:
    admin = client(orders_app, ServiceSettings(app_id="orders"), who="admin")
    for n in range(3):
        deliver(admin, "orders", ORDER.model_copy(update={"order_id": f"o-{n}"}))
        iid = f"order-o-{n}"
        gateway.workflows.instances[iid] = replace(
            gateway.workflows.instances[iid], status="FAILED", failure="fulfilment crashed"
        )
        admin.post("/workflows/reconcile")
    job = admin.post("/workflows/jobs", json={"action": "purge"}).json()
    assert set(wait_job(admin, job["job_id"])["results"].values()) == {"purged"}
    assert not gateway.workflows.instances
    for n in range(3):
        body = admin.get(f"/orders/o-{n}").json()
        assert (body["status"], body["failure"]) == ("failed", "fulfilment crashed")


def test_waiting_reads_are_bounded_so_subscriptions_keep_their_threads(
    orders: TestClient,
) -> None:
    from plumbing.web import WaitingReads

    orders.app.state.waiting_reads = slots = WaitingReads(limit=1)
    with slots.slot(wait=1):  # another reader is waiting
        busy = orders.get("/orders/o-404", params={"wait": 5})
        assert busy.status_code == 429 and "reads are waiting already" in busy.json()["detail"]
        assert orders.get("/orders/o-404").status_code == 404  # a read that does not wait
    assert orders.get("/orders/o-404", params={"wait": 0.2}).status_code == 404
