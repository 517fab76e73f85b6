"""The workflows' activities, on the fake gateway: what each writes and publishes.

The workflow tests script the activities; these run the real ones, as the worker does, with
the JSON the workflow scheduled them with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from approvals.readmodel import INDEX_KEY, load_view
from approvals.workflows import PUBLISH_OUTCOME, RECORD_APPROVAL, REQUEST_NEXT_STAGE
from approvals.workflows import make_activities as approval_activities
from contracts.messages import ApprovalOutcome, ApprovalRequested, OrderStatusChanged
from contracts.topics import APPROVAL_OUTCOMES, APPROVAL_REQUESTS, ORDER_STATUS
from orders.activities import make_activities as order_activities
from orders.readmodel import load
from orders.workflows import FULFIL_ORDER, PUBLISH_STATUS, RECORD_ORDER, REQUEST_APPROVAL
from tests.fakes import fake_gateway

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
DUE = NOW + timedelta(days=3)


def request(**over: Any) -> dict[str, Any]:
    """An ApprovalRequested as the workflow schedules it: in dinars, which the default
    limits do not know (the sending app checked it under its own policy)."""
    return {
        "request_id": "o-1-s1-manager",
        "order_id": "o-1",
        "customer_id": "c-1",
        "amount": "1000.500",
        "currency": "BHD",
        "tier": "manager",
        "stage": 1,
        "due_at": DUE.isoformat(),
        "reason": "needs manager approval",
        **over,
    }


def test_a_status_step_is_recorded_then_announced() -> None:
    gateway = fake_gateway()
    step = {"order_id": "o-1", "status": "received", "at": NOW.isoformat(), "detail": "1.00 EUR"}
    record = {"customer_id": "c-1", "amount": "1.00", "currency": "EUR"}
    order_activities(gateway)[PUBLISH_STATUS](None, step | {"record": record})

    saved = load(gateway.state, "o-1")
    assert saved is not None
    assert (saved.status, saved.detail, saved.updated_at) == ("received", "1.00 EUR", NOW)
    assert (saved.customer_id, saved.amount, saved.currency) == ("c-1", "1.00", "EUR")
    (sent,) = gateway.publisher.to(ORDER_STATUS)
    assert sent == OrderStatusChanged(
        order_id="o-1", status="received", at=NOW, detail="1.00 EUR", customer_id="c-1"
    )  # whom it is for, from the record: the notifier writes to them


def test_a_status_step_scheduled_before_records_existed_is_recorded_too() -> None:
    gateway = fake_gateway()
    step = {"order_id": "o-1", "status": "approved", "at": NOW.isoformat(), "detail": "by m-1"}
    order_activities(gateway)[PUBLISH_STATUS](None, step)  # no "record" key at all
    saved = load(gateway.state, "o-1")
    assert saved is not None and (saved.status, saved.detail) == ("approved", "by m-1")
    assert [m.status for m in gateway.publisher.to(ORDER_STATUS)] == ["approved"]


def test_record_order_writes_the_change_to_the_record() -> None:
    gateway = fake_gateway()
    change = {"order_id": "o-1", "status": "awaiting_approval", "detail": "vp approval due"}
    order_activities(gateway)[RECORD_ORDER](None, change)
    saved = load(gateway.state, "o-1")
    assert saved is not None
    assert (saved.status, saved.detail) == ("awaiting_approval", "vp approval due")
    assert gateway.publisher.published == []


def test_an_approval_request_is_published_as_checked_by_the_orders_app() -> None:
    gateway = fake_gateway()
    order_activities(gateway)[REQUEST_APPROVAL](None, request())
    (sent,) = gateway.publisher.to(APPROVAL_REQUESTS)
    assert isinstance(sent, ApprovalRequested)
    assert (sent.order_id, str(sent.amount), sent.currency) == ("o-1", "1000.500", "BHD")


def test_fulfilment_keeps_what_was_ordered_under_the_order_id() -> None:
    gateway = fake_gateway()
    order = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "amount": "1000.500",
        "currency": "BHD",
        "items": [{"sku": "chair", "quantity": 4}],
        "placed_at": NOW.isoformat(),
    }
    kept = order_activities(gateway)[FULFIL_ORDER](None, order)
    expected = {
        "order_id": "o-1",
        "amount": "1000.500",
        "currency": "BHD",
        "items": [{"sku": "chair", "quantity": 4}],
    }
    assert kept == expected
    assert gateway.state.get("fulfilment:o-1")[0] == expected


def test_fulfilment_run_again_ships_nothing_twice() -> None:
    """After a crash before its completion was recorded, the activity runs again: the first
    run's record stays, and the repeat answers with it."""
    gateway = fake_gateway()
    first = {"order_id": "o-1", "amount": "10.00", "currency": "EUR", "items": []}
    gateway.state.claim("fulfilment:o-1", first)
    again = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "amount": "12.00",
        "currency": "EUR",
        "items": [{"sku": "chair", "quantity": 1}],
        "placed_at": NOW.isoformat(),
    }
    assert order_activities(gateway)[FULFIL_ORDER](None, again) == first
    assert gateway.state.get("fulfilment:o-1")[0] == first


def test_an_approval_outcome_is_published_on_its_topic() -> None:
    gateway = fake_gateway()
    outcome = {
        "order_id": "o-1",
        "outcome": "approved",
        "decided_by": "m-1",
        "tier": "manager",
        "reason": "fine",
        "decided_at": NOW.isoformat(),
    }
    approval_activities(gateway)[PUBLISH_OUTCOME](None, outcome)
    assert gateway.publisher.published == [
        (APPROVAL_OUTCOMES, ApprovalOutcome.model_validate(outcome))
    ]


def test_the_next_stage_is_requested_as_checked_by_the_approvals_app() -> None:
    gateway = fake_gateway()
    approval_activities(gateway)[REQUEST_NEXT_STAGE](None, request(stage=2, tier="vp"))
    (sent,) = gateway.publisher.to(APPROVAL_REQUESTS)
    assert isinstance(sent, ApprovalRequested)
    assert (sent.stage, sent.tier, str(sent.amount)) == (2, "vp", "1000.500")


def test_record_approval_writes_the_view_and_its_inbox_line() -> None:
    gateway = fake_gateway()
    view = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "amount": "1000.500",
        "currency": "BHD",
        "status": "pending",
        "tier": "manager",
        "stage": 1,
        "due_at": DUE.isoformat(),
        "log": [{"at": NOW.isoformat(), "kind": "requested", "stage": 1, "tier": "manager"}],
    }
    approval_activities(gateway)[RECORD_APPROVAL](None, view)
    saved = load_view(gateway.state, "o-1")
    assert saved is not None
    assert (saved.status, saved.tier, saved.due_at, len(saved.log)) == (
        "pending",
        "manager",
        DUE,
        1,
    )
    index, _ = gateway.state.get(INDEX_KEY)
    assert index["o-1"]["status"] == "pending"
    assert gateway.publisher.published == []
