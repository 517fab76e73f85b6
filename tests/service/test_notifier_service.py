import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from contracts.messages import ApprovalRequested, OrderStatus, OrderStatusChanged
from contracts.money import Valuation
from contracts.policy import load_policy
from notifier import api as notifier_api
from notifier.app import create_app
from notifier.domain import for_approval_request, for_status_change
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


def test_the_log_channel_takes_no_sending_lease_but_the_webhook_does(
    client: AppFactory, gateway
) -> None:
    """A log line written twice harms no one: only outbound channels pay for a lease."""
    notifier = client(create_app, NotifierSettings(app_id="notifier", channels=("log", "webhook")))
    assert deliver(notifier, "order-status", STATUS)["status"] == "SUCCESS"
    leases = sorted(k for k in gateway.state.data if k.startswith("notification-sending:"))
    assert leases == ["notification-sending:o-1-approved:webhook"]
    (note,) = notifier.get("/notifications", params={"order_id": "o-1"}).json()
    assert sorted(note["delivered"]) == ["log", "webhook"]


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


def test_a_redelivery_beside_the_first_delivery_calls_the_webhook_once(
    client: AppFactory, gateway
) -> None:
    """The sidecar may hand a message to a second worker while the first is still sending it."""
    notifier = client(create_app, NotifierSettings(app_id="notifier", channels=("log", "webhook")))
    sending, release = threading.Event(), threading.Event()
    invoke = gateway.bindings.invoke

    def slow_invoke(*args: Any) -> None:
        sending.set()
        assert release.wait(10)
        invoke(*args)

    gateway.bindings.invoke = slow_invoke
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(deliver, notifier, "order-status", STATUS)
        assert sending.wait(10)
        second = deliver(notifier, "order-status", STATUS)
        assert second["status"] == "RETRY" and "in progress" in second["reason"]
        release.set()
        assert first.result()["status"] == "SUCCESS"
    assert deliver(notifier, "order-status", STATUS)["reason"] == "already delivered"
    assert len(gateway.bindings.calls) == 1
    (note,) = notifier.get("/notifications", params={"order_id": "o-1"}).json()
    assert list(note["delivered"]) == ["log", "webhook"]


def test_a_failed_webhook_gives_the_channel_back_and_a_dead_holder_s_lease_runs_out(
    client: AppFactory, gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    notifier = client(create_app, NotifierSettings(app_id="notifier", channels=("webhook",)))
    gateway.bindings.failing = True
    assert deliver(notifier, "order-status", STATUS)["status"] == "RETRY"
    gateway.bindings.failing = False
    assert deliver(notifier, "order-status", STATUS)["status"] == "SUCCESS"  # not held
    other = OrderStatusChanged(order_id="o-9", status="approved", at=NOW)
    # A holder that died while sending: its lease is in the store and nobody will finish it.
    taken_at = datetime.now(UTC) - notifier_api.SENDING_LEASE - timedelta(seconds=1)
    gateway.state.put(
        "notification-sending:o-9-approved:webhook",
        {"holder": "dead", "until": (taken_at + notifier_api.SENDING_LEASE).isoformat()},
    )
    assert deliver(notifier, "order-status", other)["status"] == "SUCCESS"
    assert [json.loads(d)["order_id"] for _, _, d, _ in gateway.bindings.calls] == ["o-1", "o-9"]


def test_a_webhook_sent_while_the_store_failed_to_record_it_is_not_sent_again(
    client: AppFactory, gateway
) -> None:
    notifier = client(create_app, NotifierSettings(app_id="notifier", channels=("webhook",)))
    invoke = gateway.bindings.invoke

    def store_down_after_sending(*args: Any) -> None:
        invoke(*args)
        gateway.state.refuse_writes = ("notification",)  # Redis dies right after the call

    gateway.bindings.invoke = store_down_after_sending
    assert deliver(notifier, "order-status", STATUS)["status"] == "RETRY"
    gateway.bindings.invoke = invoke
    assert deliver(notifier, "order-status", STATUS)["status"] == "RETRY"  # still down
    gateway.state.refuse_writes = ()
    assert deliver(notifier, "order-status", STATUS)["status"] == "SUCCESS"
    assert deliver(notifier, "order-status", STATUS)["reason"] == "already delivered"
    assert len(gateway.bindings.calls) == 1
    (note,) = notifier.get("/notifications", params={"order_id": "o-1"}).json()
    assert list(note["delivered"]) == ["webhook"]


def test_a_notification_stored_before_the_store_failed_still_reaches_the_order_s_log(
    client: AppFactory, gateway
) -> None:
    """The record is stored, then the store fails before the order's log has it (found by the
    fault tier when redis-server was killed): the redelivery, which finds the record and so
    sends nothing, adds it to the log."""
    notifier = client(create_app, NotifierSettings(app_id="notifier", channels=("webhook",)))
    gateway.state.refuse_writes = ("notifications-by-order",)
    assert deliver(notifier, "order-status", STATUS)["status"] == "RETRY"
    gateway.state.refuse_writes = ()
    assert deliver(notifier, "order-status", STATUS)["reason"] == "already delivered"
    assert len(gateway.bindings.calls) == 1
    (note,) = notifier.get("/notifications", params={"order_id": "o-1"}).json()
    assert note["id"] == "o-1-approved" and list(note["delivered"]) == ["webhook"]


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
    assert note["text"] == (
        "Order o-2 for 4900.00 GBP (5586.00 EUR; 1 GBP = 1.14 EUR as of 2026-11-20) "
        "needs vp approval by 2026-01-05 09:00 UTC (stage 1)."
    )


def approval_request(**changes) -> ApprovalRequested:
    fields = {
        "request_id": "o-4-s1-manager",
        "order_id": "o-4",
        "customer_id": "c",
        "amount": "1200",
        "currency": "EUR",
        "tier": "manager",
        "stage": 1,
        "due_at": datetime(2026, 1, 8, 11, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
        "reason": "1200.00 EUR needs manager approval",  # as the order workflow words it
    }
    return ApprovalRequested.model_validate(fields | changes)


def test_approvers_are_told_once_when_it_was_sent_and_by_when_to_decide() -> None:
    note = for_approval_request(approval_request(), sent_at=NOW)
    assert (note.at, note.due_at) == (NOW, approval_request().due_at)
    assert note.text == (
        "Order o-4 for 1200.00 EUR needs manager approval by 2026-01-08 09:30 UTC (stage 1)."
    )
    escalated = approval_request(
        stage=2, tier="vp", reason="the manager did not decide in time; escalated to a VP"
    )
    assert for_approval_request(escalated, sent_at=NOW).text == (
        "Order o-4 for 1200.00 EUR needs vp approval by 2026-01-08 09:30 UTC (stage 2). "
        "the manager did not decide in time; escalated to a VP"
    )


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [("1200", "EUR", "1200.00 EUR"), ("1200.5", "EUR", "1200.50 EUR"), ("9000", "JPY", "9000 JPY")],
)
def test_approver_text_keeps_the_minor_units(amount: str, currency: str, shown: str) -> None:
    request = approval_request(amount=amount, currency=currency, reason="")
    assert f"Order o-4 for {shown} needs" in for_approval_request(request, sent_at=NOW).text


def test_notifications_are_listed_in_the_order_they_happened(client: AppFactory) -> None:
    notifier = client(create_app, NotifierSettings(app_id="notifier"))
    # Delivered out of order, one in another zone (+02:00, so it sorts wrong as a string);
    # the approver's, sent last, after all three status changes.
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    for status, at in [
        ("approved", hour_ago + timedelta(minutes=20)),
        ("received", hour_ago),
        (
            "awaiting_approval",
            hour_ago.astimezone(timezone(timedelta(hours=2))) + timedelta(minutes=10),
        ),
    ]:
        message = OrderStatusChanged(order_id="o-5", status=status, at=at)
        assert deliver(notifier, "order-status", message)["status"] == "SUCCESS"
    before = datetime.now(UTC)
    request = approval_request(request_id="o-5-s1-manager", order_id="o-5")
    assert deliver(notifier, "approval-requests", request)["status"] == "SUCCESS"
    notes = notifier.get("/notifications", params={"order_id": "o-5"}).json()
    assert [n["id"] for n in notes] == [
        "o-5-received",
        "o-5-awaiting_approval",
        "o-5-approved",
        "o-5-s1-manager",
    ]
    approver = notes[-1]
    assert datetime.fromisoformat(approver["at"]) >= before  # sent now, not due in 3 days
    assert datetime.fromisoformat(approver["due_at"]) == request.due_at


def test_approvers_are_told_an_amount_with_more_places_than_babel_gives_as_accepted(
    client: AppFactory,
) -> None:
    # Orders checked the amount under its policy (IQD with 3 places); the notifier takes it so.
    policy = load_policy({"POLICY_RATES": "IQD=0.00066@2026-11-20", "POLICY_MINOR_UNITS": "IQD=3"})
    notifier = client(create_app, NotifierSettings(app_id="notifier"))
    request = ApprovalRequested.model_validate(
        {
            "request_id": "o-3-s1-manager",
            "order_id": "o-3",
            "customer_id": "c",
            "amount": "1500000.875",
            "currency": "IQD",
            "tier": "manager",
            "stage": 1,
            "due_at": NOW,
            "valuation": policy.value(Decimal("1500000.875"), "IQD"),
        },
        context=policy.limits,
    )
    assert deliver(notifier, "approval-requests", request)["status"] == "SUCCESS"
    (note,) = notifier.get("/notifications", params={"order_id": "o-3"}).json()
    assert note["text"].startswith(
        "Order o-3 for 1500000.875 IQD (990.00 EUR; 1 IQD = 0.00066 EUR as of 2026-11-20) "
    )


def test_notification_times_are_utc_whatever_zone_the_sender_used() -> None:
    from datetime import timedelta, timezone

    from notifier.domain import for_status_change

    east = timezone(timedelta(hours=2))
    msg = OrderStatusChanged(
        order_id="o-tz", status=OrderStatus.COMPLETED, at=datetime(2026, 11, 23, 12, 0, tzinfo=east)
    )
    assert for_status_change(msg).model_dump(mode="json")["at"] == "2026-11-23T10:00:00Z"
