"""What a local process or a web page can and cannot do to a running stack."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from contracts.envelope import CONTENT_TYPE, wrap
from contracts.messages import ApprovalRequested, Tier
from devstack.stack import Stack
from tests.e2e.flow import Flow
from tests.stack import eventually, unique

pytestmark = pytest.mark.e2e


def test_a_sidecar_refuses_callers_without_its_api_token(flow: Flow, stack: Stack) -> None:
    order = flow.order_message("120.00")
    sidecar = stack.apps["orders"]
    url = f"{sidecar.dapr_url}/v1.0/publish/pubsub/orders"
    body, headers = wrap(order, "page"), {"content-type": CONTENT_TYPE}
    assert httpx.post(url, content=body, headers=headers).status_code == 401
    wrong = {**headers, "dapr-api-token": stack.apps["approvals"].dapr_api_token}
    assert httpx.post(url, content=body, headers=wrong).status_code == 401
    assert flow.order(order.order_id) is None


def test_apps_answer_only_for_their_own_host_names(stack: Stack, http: httpx.Client) -> None:
    url = f"{stack.apps['orders'].app_url}/workflows"
    rebound = http.get(url, headers={"host": "attacker.example:8101"})
    assert rebound.status_code == 421 and "attacker.example" in rebound.json()["detail"]
    assert http.get(url).status_code == 200
    probe = http.get(f"{stack.apps['orders'].app_url}/healthz", headers={"host": "10.1.2.3"})
    assert probe.status_code == 200  # probes call the pod's address


def test_redis_wants_the_stacks_password(stack: Stack) -> None:
    with socket.create_connection(("127.0.0.1", stack.redis_port), timeout=5) as s:
        s.sendall(b"GET anything\r\n")
        assert s.recv(64).startswith(b"-NOAUTH")


def test_tokens_file_lets_a_person_publish_by_hand(flow: Flow, stack: Stack) -> None:
    lines = (stack.run_dir / "tokens.env").read_text().splitlines()
    assert (stack.run_dir / "tokens.env").stat().st_mode & 0o077 == 0
    exported = dict(
        line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export")
    )
    order = flow.order_message("60.00", order_id=unique("by-hand"))
    resp = httpx.post(
        f"{stack.apps['orders'].dapr_url}/v1.0/publish/pubsub/orders",
        content=wrap(order, "person"),
        headers={"content-type": CONTENT_TYPE, "dapr-api-token": exported["ORDERS_DAPR_API_TOKEN"]},
    )
    assert resp.status_code == 204
    assert flow.finished(order.order_id)["workflow_status"] == "COMPLETED"


def test_a_forged_low_tier_request_cannot_approve_a_vp_sized_order(flow: Flow) -> None:
    """A shop holds the orders sidecar token, so it can publish an approval request of its
    own, before it places the order. The approval that follows is real, but at the wrong
    level: the order workflow does not take a manager's approval for a VP-sized order."""
    order = flow.order_message("9000.00")
    forged = ApprovalRequested(
        request_id=ApprovalRequested.make_id(order.order_id, 1, Tier.MANAGER),
        order_id=order.order_id,
        customer_id=order.customer_id,
        amount="100.00",
        currency="EUR",
        tier=Tier.MANAGER,
        stage=1,
        due_at=datetime.now(UTC) + timedelta(minutes=5),
    )
    flow.publish(forged, "approval-requests", via="orders")
    flow.pending(order.order_id, tier="manager")
    flow.publish(order, "orders")
    eventually(
        lambda: ((flow.order(order.order_id) or {}).get("approval") or {}).get("tier") == "vp",
        what="the order to wait for a VP",
    )
    assert flow.decide(order.order_id, "manager").status_code == 202
    eventually(
        lambda: (flow.approval(order.order_id) or {}).get("status") == "approved",
        what="the forged-request approval to finish",
    )
    eventually(
        lambda: any(
            e["type"] == "EVENT_RAISED"
            for e in flow.http.get(f"{flow.orders}/workflows/order-{order.order_id}/history").json()
        ),
        what="the manager's approval outcome to reach the order",
    )
    state = flow.order(order.order_id)
    assert state is not None and state["workflow_status"] == "RUNNING"
    assert state["status"] == "awaiting_approval" and state["approval"]["tier"] == "vp"
    assert "awaiting vp" in str(state["workflow"]["custom_status"])


def test_only_its_own_sidecar_can_read_an_apps_signing_key(stack: Stack) -> None:
    def read(app: str, store: str, name: str) -> int:
        sidecar = stack.apps[app]
        url = f"{sidecar.dapr_url}/v1.0/secrets/{store}/{name}"
        return httpx.get(url, headers=sidecar.dapr_headers).status_code

    for signer in ("orders", "approvals"):
        assert read(signer, f"{signer}-keys", "signing-key") == 200
        for other in {"orders", "approvals", "notifier"} - {signer}:
            assert read(other, f"{signer}-keys", "signing-key") >= 400
            assert read(other, "localsecretstore", f"{signer}-verify-keys") == 200
    assert read("orders", "localsecretstore", "not-listed") >= 400  # secret scopes
