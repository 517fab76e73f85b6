"""No path around the approvers through the management API (issue: approval integrity)."""

import json
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from approvals.app import create_app as approvals_app
from approvals.domain import ApprovalView
from approvals.readmodel import save_view
from contracts.envelope import wrap
from contracts.messages import ApprovalOutcome, DecisionSubmitted, Tier
from contracts.policy import ApprovalPolicy
from contracts.signing import Signer, new_key_pair
from orders.app import create_app as orders_app
from plumbing.settings import ServiceSettings
from tests.fakes import dev_signer
from tests.service.conftest import AppFactory, deliver
from tests.service.test_management_service import order, start


@pytest.fixture
def ops(client: AppFactory) -> TestClient:
    return client(orders_app, ServiceSettings(app_id="orders"), who="operator")


@pytest.fixture
def approvals_ops(client: AppFactory) -> TestClient:
    return client(approvals_app, ServiceSettings(app_id="approvals"), who="admin")


def test_an_operator_start_takes_the_servers_policy(ops: TestClient, gateway) -> None:
    assert start(ops, "order-big").status_code == 201
    ((name, iid, wf_input),) = gateway.workflows.scheduled
    assert (name, iid) == ("order_workflow", "order-big")
    assert wf_input["policy"] == ApprovalPolicy().snapshot()


def test_an_operator_cannot_bring_a_policy_of_their_own(ops: TestClient, gateway) -> None:
    forged = {"order": order("o-1", "9999999.00"), "policy": {"auto_approve_below": "1e9"}}
    resp = ops.post("/workflows", json={"name": "order_workflow", "input": forged})
    assert resp.status_code == 422 and "order_id: Field required" in resp.json()["detail"]
    sneaky = order("o-2") | {"policy": {"auto_approve_below": "1e9"}}
    resp = ops.post("/workflows", json={"name": "order_workflow", "input": sneaky})
    assert resp.status_code == 422 and "policy" in resp.json()["detail"]
    assert not gateway.workflows.scheduled


def test_an_operator_start_is_named_by_the_order(ops: TestClient, gateway) -> None:
    body = {"name": "order_workflow", "input": order("o-3"), "instance_id": "order-other"}
    resp = ops.post("/workflows", json=body)
    assert resp.status_code == 422 and "'order-o-3'" in resp.json()["detail"]
    assert not gateway.workflows.scheduled


def test_approval_workflows_start_only_from_their_topic(approvals_ops: TestClient, gateway) -> None:
    body = {"name": "approval_workflow", "input": {"request": {}, "policy": {}}}
    resp = approvals_ops.post("/workflows", json=body)
    assert resp.status_code == 403 and "approval-requests topic" in resp.json()["detail"]
    assert not gateway.workflows.scheduled
    assert approvals_ops.get("/audit").json()[-1]["outcome"].startswith("refused 403")


@pytest.mark.parametrize("event", ["approval_outcome", "APPROVAL_OUTCOME", "decision"])
def test_business_events_cannot_be_raised_by_operators(
    ops: TestClient, gateway, event: str
) -> None:
    start(ops, "order-o-4")
    resp = ops.post(f"/workflows/order-o-4/events/{event}", json={"outcome": "approved"})
    assert resp.status_code == 403 and "operator events: none" in resp.json()["detail"]
    assert not gateway.workflows.raised
    assert ops.get("/audit").json()[-1]["outcome"].startswith("refused 403")


def test_decisions_cannot_be_raised_into_approvals_by_operators(
    approvals_ops: TestClient, gateway
) -> None:
    gateway.workflows.add("approval-o-5", name="approval_workflow")
    vp = {"approved": True, "approver_id": "val", "approver_role": "vp"}
    resp = approvals_ops.post("/workflows/approval-o-5/events/decision", json=vp)
    assert resp.status_code == 403 and not gateway.workflows.raised


def test_terminate_needs_a_reason_and_its_output_is_never_the_outcome(
    ops: TestClient, gateway
) -> None:
    start(ops, "order-o-6")
    no_reason = ops.post("/workflows/order-o-6/terminate", json={})
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"]
    forged = {"reason": "done", "output": {"status": "completed", "decided_by": "val"}}
    assert ops.post("/workflows/order-o-6/terminate", json=forged).status_code == 422
    assert ops.post("/workflows/order-o-6/terminate", json={"reason": "stuck"}).status_code == 200
    assert gateway.workflows.instances["order-o-6"].output == (
        '{"terminated": true, "by": "olga", "reason": "stuck"}'
    )
    shown = ops.get("/orders/o-6").json()
    assert shown["workflow_status"] == "TERMINATED" and shown["result"] is None
    assert shown["terminated"] == {"terminated": True, "by": "olga", "reason": "stuck"}


OUTCOME = ApprovalOutcome(
    order_id="o-7",
    outcome="approved",
    decided_by="val",
    decided_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
)
DECISION = DecisionSubmitted(
    decision_id="d-forged",
    order_id="o-8",
    approved=True,
    approver_id="val",
    approver_role="vp",
    decided_at=datetime.now(UTC),
)


def forged_with_another_key() -> Signer:
    signing, _ = new_key_pair("dev-approvals-1")  # the right key id, the wrong key
    return Signer.from_secret(signing)


def tampered(message: ApprovalOutcome | DecisionSubmitted) -> bytes:
    """Signed by the real key, then the data changed on the way."""
    event = json.loads(wrap(message, "approvals", dev_signer()))
    event["data"]["decided_by" if "decided_by" in event["data"] else "approver_id"] = "mallory"
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ({"signed": False}, "unsigned"),
        ({"signed": "other key"}, "does not match"),
        ({"tamper": True}, "does not match"),
    ],
)
def test_an_outcome_not_signed_by_approvals_is_dropped_and_audited(
    ops: TestClient, gateway, how: dict, says: str
) -> None:
    gateway.workflows.add("order-o-7", name="order_workflow")
    if how.get("tamper"):
        answer = deliver(ops, "approval-outcomes", tampered(OUTCOME))
    else:
        signed = forged_with_another_key() if how["signed"] == "other key" else False
        answer = deliver(ops, "approval-outcomes", OUTCOME, signed=signed)
    assert answer["status"] == "DROP" and says in answer["reason"]
    assert not gateway.workflows.raised
    last = ops.get("/audit").json()[-1]
    assert last["action"] == "deliver approval-outcomes" and says in last["outcome"]
    assert last["target"] == "o-7-outcome"


def test_a_signed_outcome_is_raised(ops: TestClient, gateway) -> None:
    gateway.workflows.add("order-o-7", name="order_workflow")
    assert deliver(ops, "approval-outcomes", OUTCOME)["status"] == "SUCCESS"
    assert [(i, e) for i, e, _ in gateway.workflows.raised] == [("order-o-7", "approval_outcome")]


def test_a_forged_decision_is_dropped_and_audited(approvals_ops: TestClient, gateway) -> None:
    gateway.workflows.add("approval-o-8", name="approval_workflow")
    answer = deliver(approvals_ops, "decisions", DECISION, signed=False)
    assert answer["status"] == "DROP" and "unsigned" in answer["reason"]
    answer = deliver(approvals_ops, "decisions", tampered(DECISION))
    assert answer["status"] == "DROP" and "does not match" in answer["reason"]
    assert not gateway.workflows.raised
    refused = [r for r in approvals_ops.get("/audit").json() if r["target"] == "d-forged"]
    assert len(refused) == 2 and all(r["outcome"].startswith("refused") for r in refused)
    assert deliver(approvals_ops, "decisions", DECISION)["status"] == "SUCCESS"
    assert [(i, e) for i, e, _ in gateway.workflows.raised] == [("approval-o-8", "decision")]


def test_an_app_refuses_to_start_without_its_sidecar_tokens() -> None:
    bare = ServiceSettings(app_id="orders")
    with pytest.raises(ValueError, match="APP_API_TOKEN and DAPR_API_TOKEN not set"):
        orders_app(bare)
    half = ServiceSettings(app_id="orders", app_api_token="a" * 40)
    with pytest.raises(ValueError, match="DAPR_API_TOKEN not set"):
        orders_app(half)
    assert ServiceSettings(app_id="orders", development=True).token_problem() is None
    env = {"APP_API_TOKEN": "a" * 40, "DAPR_API_TOKEN": "b" * 40}
    assert ServiceSettings.from_env("orders", env).token_problem() is None
    weak = {"APP_API_TOKEN": "x", "DAPR_API_TOKEN": "b" * 40}
    assert "APP_API_TOKEN must be long" in str(
        ServiceSettings.from_env("orders", weak).token_problem()
    )


def test_an_operator_start_of_a_used_order_id_says_nothing_started(
    ops: TestClient, gateway
) -> None:
    assert start(ops, "order-o-10").status_code == 201
    gateway.workflows.terminate("order-o-10")
    gateway.workflows.purge("order-o-10")  # finished and purged: the id stays claimed
    again = start(ops, "order-o-10")
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["status"] == "NOT_STARTED" and "used before" in again.json()["detail"]
    assert len(gateway.workflows.scheduled) == 1


def test_a_foreign_host_name_is_refused(ops: TestClient) -> None:
    resp = ops.get("/workflows", headers={"host": "rebound.example"})
    assert resp.status_code == 421 and "ALLOWED_HOSTS" in resp.json()["detail"]
    assert ops.get("/healthz", headers={"host": "10.0.0.7:8101"}).status_code == 200


def pending_view(order_id: str, customer: str = "c-1") -> ApprovalView:
    """An approval waiting for a manager, as the approval workflow records it."""
    return ApprovalView(
        order_id=order_id,
        customer_id=customer,
        amount="1200.00",
        currency="EUR",
        status="pending",
        tier=Tier.MANAGER,
        stage=1,
        due_at=datetime.now(UTC),
    )


def test_bob_may_not_approve_the_order_of_customer_Bob(client: AppFactory, gateway) -> None:
    manager = client(approvals_app, ServiceSettings(app_id="approvals"), who="manager")
    save_view(gateway.state, pending_view("o-9", customer="Bob"))
    resp = manager.post("/approvals/o-9/decisions", json={"approved": True})
    assert resp.status_code == 403 and "their own order" in resp.json()["detail"]
    assert not gateway.publisher.published


def test_a_terminated_approval_leaves_the_inbox_and_takes_no_decision(
    client: AppFactory, gateway
) -> None:
    ops = client(approvals_app, ServiceSettings(app_id="approvals"), who="operator")
    vp = client(approvals_app, ServiceSettings(app_id="approvals"), who="vp")
    save_view(gateway.state, pending_view("o-11"))
    gateway.workflows.add("approval-o-11", name="approval_workflow")
    assert [r["order_id"] for r in vp.get("/approvals?status=pending").json()] == ["o-11"]
    stop = ops.post("/workflows/approval-o-11/terminate", json={"reason": "stuck"})
    assert stop.status_code == 200
    assert vp.get("/approvals?status=pending").json() == []
    shown = vp.get("/approvals/o-11").json()
    assert (shown["status"], shown["decided_by"], shown["reason"]) == (
        "terminated",
        "olga",
        "stuck",
    )
    late = vp.post("/approvals/o-11/decisions", json={"approved": True})
    assert late.status_code == 409 and not gateway.publisher.published
