import json
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from contracts.messages import ApprovalRequested, OrderStatus, OrderStatusChanged
from contracts.money import Valuation
from notifier.app import create_app
from notifier.domain import for_status_change
from notifier.settings import NotifierSettings, SettingsError
from tests.service.conftest import AppFactory, deliver

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)
STATUS = OrderStatusChanged(order_id="o-1", status="approved", at=NOW, detail="by m-1")


def test_each_message_is_delivered_once(client: AppFactory) -> None:
    notifier: TestClient = client(create_app, NotifierSettings(app_id="notifier"))
    assert deliver(notifier, "order-status", STATUS)["status"] == "SUCCESS"
    assert deliver(notifier, "order-status", STATUS)["reason"] == "already delivered"
    (note,) = notifier.get("/notifications", params={"order_id": "o-1"}).json()
    assert note["id"] == "o-1-approved" and note["audience"] == "customer"
    assert list(note["delivered"]) == ["log"]
    assert notifier.get("/notifications", params={"order_id": "a b"}).status_code == 422


def test_webhook_channel_posts_through_the_binding(client: AppFactory, gateway) -> None:
    notifier = client(create_app, NotifierSettings(app_id="notifier", channels=("log", "webhook")))
    request = ApprovalRequested(
        request_id="o-1-s1-vp",
        order_id="o-1",
        customer_id="c",
        amount="9000.00",
        currency="EUR",
        tier="vp",
        stage=1,
        due_at=NOW,
    )
    assert deliver(notifier, "approval-requests", request)["status"] == "SUCCESS"
    ((name, operation, data, metadata),) = gateway.bindings.calls
    assert (name, operation, metadata["path"]) == ("notify-webhook", "post", "/approvers/vp")
    assert json.loads(data)["order_id"] == "o-1"


def test_customer_is_told_a_fixed_text_never_the_approver_or_their_reason(
    client: AppFactory, gateway
) -> None:
    notifier = client(create_app, NotifierSettings(app_id="notifier", channels=("log", "webhook")))
    private = OrderStatusChanged(
        order_id="o-2", status="rejected", at=NOW, detail="by bob: customer looks like a fraud"
    )
    assert deliver(notifier, "order-status", private)["status"] == "SUCCESS"
    ((_, _, data, metadata),) = gateway.bindings.calls
    assert metadata["path"] == "/customer"
    (logged,) = notifier.get("/notifications", params={"order_id": "o-2"}).json()
    for told in (json.loads(data), logged):
        assert told["text"] == "Your order o-2 was not approved."
        assert told["subject"] == "Order o-2: rejected"
        assert "bob" not in json.dumps(told) and "fraud" not in json.dumps(told)


@pytest.mark.parametrize("status", list(OrderStatus))
def test_every_status_has_its_own_customer_text(status: OrderStatus) -> None:
    note = for_status_change(
        OrderStatusChanged(order_id="o-3", status=status, at=NOW, detail="by vera: internal")
    )
    assert "o-3" in note.text and "vera" not in note.text and "internal" not in note.text
    others = {
        for_status_change(OrderStatusChanged(order_id="o-3", status=s, at=NOW)).text
        for s in OrderStatus
        if s is not status
    }
    assert note.text not in others


def test_failed_webhook_asks_for_a_retry_and_records_nothing(client: AppFactory, gateway) -> None:
    notifier = client(create_app, NotifierSettings(app_id="notifier", channels=("webhook",)))
    gateway.bindings.failing = True
    answer = deliver(notifier, "order-status", STATUS)
    assert answer["status"] == "RETRY" and "webhook delivery failed" in answer["reason"]
    assert notifier.get("/notifications", params={"order_id": "o-1"}).json() == []
    gateway.bindings.failing = False
    assert deliver(notifier, "order-status", STATUS)["status"] == "SUCCESS"
    assert len(gateway.bindings.calls) == 1


def test_unknown_channel_fails_startup_with_a_clear_message() -> None:
    with pytest.raises(SettingsError, match="NOTIFY_CHANNELS: unknown channel"):
        NotifierSettings.from_env(env={"NOTIFY_CHANNELS": "log,pigeon"})


def test_approvers_are_told_the_amount_and_what_it_is_worth(client: AppFactory) -> None:
    notifier = client(create_app, NotifierSettings(app_id="notifier"))
    request = ApprovalRequested(
        request_id="o-2-s1-vp",
        order_id="o-2",
        customer_id="c",
        amount="4900",
        currency="GBP",
        tier="vp",
        stage=1,
        due_at=NOW,
        valuation=Valuation(
            base_currency="EUR", base_amount="5586.00", rate="1.14", rate_as_of="2026-11-20"
        ),
    )
    assert deliver(notifier, "approval-requests", request)["status"] == "SUCCESS"
    (note,) = notifier.get("/notifications", params={"order_id": "o-2"}).json()
    assert note["text"].startswith(
        "Order o-2 for 4900.00 GBP (5586.00 EUR; 1 GBP = 1.14 EUR as of 2026-11-20) "
        "needs vp approval by 2026-01-05T09:00:00+00:00 (stage 1)."
    )
