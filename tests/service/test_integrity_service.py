"""No path around the approvers through the management API (issue: approval integrity)."""

import pytest
from fastapi.testclient import TestClient

from approvals.app import create_app as approvals_app
from contracts.policy import ApprovalPolicy
from orders.app import create_app as orders_app
from plumbing.settings import ServiceSettings
from tests.service.conftest import AppFactory
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
