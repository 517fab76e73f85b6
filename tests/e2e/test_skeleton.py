"""The walking skeleton on the real runtime: an order goes in through the topic, comes out as
a COMPLETED workflow and status notifications."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from contracts.envelope import CONTENT_TYPE, wrap
from contracts.messages import OrderPlaced
from devstack.stack import Stack
from tests.e2e.flow import Flow
from tests.e2e.test_dead_letters import dead_letters
from tests.stack import eventually, unique

pytestmark = pytest.mark.e2e


def publish_order(http: httpx.Client, stack: Stack, order: OrderPlaced) -> None:
    """Publish as a shop would: through a sidecar's publish API, as a CloudEvent."""
    sidecar = stack.apps["orders"].dapr_url
    resp = http.post(
        f"{sidecar}/v1.0/publish/pubsub/orders",
        content=wrap(order, "shop"),
        headers={"content-type": CONTENT_TYPE, **stack.apps["orders"].dapr_headers},
    )
    assert resp.status_code == 204, resp.text


def test_small_order_completes_and_customer_is_told(stack: Stack, http: httpx.Client) -> None:
    order = OrderPlaced(
        order_id=unique("o"),
        customer_id="cust-1",
        amount="120.00",
        currency="EUR",
        placed_at=datetime.now(UTC),
    )
    publish_order(http, stack, order)

    orders = stack.apps["orders"].app_url
    state = eventually(
        lambda: (
            (r := http.get(f"{orders}/orders/{order.order_id}")).status_code == 200
            and r.json()["workflow_status"] == "COMPLETED"
            and r.json()
        ),
        what="order workflow COMPLETED",
    )
    assert state["result"]["status"] == "completed"
    assert state["result"]["reason"] == "auto_approved"

    notifier = stack.apps["notifier"].app_url
    notes = eventually(
        lambda: (
            [
                n["id"]
                for n in http.get(
                    f"{notifier}/notifications", params={"order_id": order.order_id}
                ).json()
            ]
            if len(
                http.get(f"{notifier}/notifications", params={"order_id": order.order_id}).json()
            )
            >= 3
            else None
        ),
        what="three customer notifications",
    )
    suffixes = sorted(n.rsplit("-", 1)[1] for n in notes)
    assert suffixes == ["approved", "completed", "received"]


def test_malformed_message_on_orders_is_dropped_once_and_does_not_stall_the_topic(
    flow: Flow, stack: Stack, http: httpx.Client
) -> None:
    bad_id = unique("bad")
    bad = {
        "specversion": "1.0",
        "id": bad_id,
        "source": "shop",
        "type": "order-approvals.OrderPlaced.v1",
        "datacontenttype": "application/json",
        "data": {"order_id": 5},
    }
    flow.publish(json.dumps(bad).encode(), "orders")
    order = OrderPlaced(
        order_id=unique("o"),
        customer_id="cust-2",
        amount="10.00",
        currency="USD",
        placed_at=datetime.now(UTC),
    )
    publish_order(http, stack, order)
    flow.finished(order.order_id)
    # Dropped at once with its reason, not left to be retried: answered DROP, kept as a dead
    # letter, and delivered once, although the next order went through after it.
    (answer,) = flow.deliveries("orders", "orders", bad_id, expect=1)
    assert answer.startswith("DROP (") and "order_id" in answer
    kept = eventually(
        lambda: [i for i in dead_letters(flow, "orders", "orders") if i["event_id"] == bad_id],
        what="the malformed order in the dead letters",
    )
    assert "order_id" in kept[0]["reason"]
    assert len(flow.deliveries("orders", "orders", bad_id, expect=1)) == 1
    assert http.get(f"{flow.orders}/readyz").status_code == 200
