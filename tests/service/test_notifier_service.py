from datetime import UTC, datetime

from fastapi.testclient import TestClient

from common.messages import OrderStatusChanged
from notifier.app import create_app
from tests.service.conftest import AppFactory, deliver

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)


def test_each_message_is_delivered_once(client: AppFactory) -> None:
    notifier: TestClient = client(create_app, "notifier")
    msg = OrderStatusChanged(order_id="o-1", status="approved", at=NOW, detail="by m-1")
    assert deliver(notifier, "order-status", msg)["status"] == "SUCCESS"
    assert deliver(notifier, "order-status", msg)["reason"] == "already delivered"
    (note,) = notifier.get("/notifications", params={"order_id": "o-1"}).json()
    assert note["id"] == "o-1-approved" and note["audience"] == "customer"
    assert notifier.get("/notifications", params={"order_id": "a b"}).status_code == 422
