"""advance_order, the activity a lean order runs its consecutive steps in, on the fake gateway:
the real activity, with the steps as the workflow schedules them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.topics import APPROVAL_REQUESTS, ORDER_STATUS
from control.instances import entry
from orders.activities import make_activities
from orders.readmodel import load
from orders.workflows import ADVANCE_ORDER
from plumbing.gateway import Transient
from tests.fakes import fake_gateway

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ORDER = {
    "order_id": "o-1",
    "customer_id": "c-1",
    "amount": "120.00",
    "currency": "EUR",
    "items": [{"sku": "chair", "quantity": 1}],
    "placed_at": NOW.isoformat(),
}
LEARNT = {"customer_id": "c-1", "amount": "120.00", "currency": "EUR", "amount_text": "120.00 EUR"}


def status(value: str, detail: str = "", **record: Any) -> dict[str, Any]:
    step = {"order_id": "o-1", "status": value, "at": NOW.isoformat(), "detail": detail}
    return {"kind": "status", "data": step | {"record": LEARNT | record}}


def auto_approved() -> list[dict[str, Any]]:
    done = {"order_id": "o-1", "status": "completed", "reason": "auto_approved"}
    track = {"instance_id": "order-o-1", "name": "order_workflow", "status": "COMPLETED"}
    return [
        status("received", "120.00 EUR"),
        status("approved", "by policy: auto_approved"),
        {"kind": "fulfil", "data": ORDER},
        status("completed", result=done),
        {"kind": "track", "data": track | {"at": NOW.isoformat()}},
    ]


def test_an_auto_approved_order_is_fulfilled_recorded_announced_and_indexed_at_once() -> None:
    gateway = fake_gateway()
    make_activities(gateway)[ADVANCE_ORDER](None, auto_approved())

    assert gateway.state.get("fulfilment:o-1")[0]["items"] == ORDER["items"]
    record = load(gateway.state, "o-1")
    assert record is not None and record.status == "completed"
    assert record.amount_text == "120.00 EUR" and record.result is not None
    sent = gateway.publisher.to(ORDER_STATUS)
    assert [m.status for m in sent] == ["received", "approved", "completed"]  # in step order
    assert {m.customer_id for m in sent} == {"c-1"}  # whom each is for, from the record
    indexed = entry(gateway.state, "order-o-1")
    assert indexed is not None and indexed.status == "COMPLETED"


def test_run_again_after_a_crash_it_ships_nothing_twice_and_repeats_only_message_ids() -> None:
    gateway = fake_gateway()
    advance = make_activities(gateway)[ADVANCE_ORDER]
    advance(None, auto_approved())
    shipped = gateway.state.get("fulfilment:o-1")
    record = load(gateway.state, "o-1")

    advance(None, auto_approved())
    assert gateway.state.get("fulfilment:o-1") == shipped
    assert load(gateway.state, "o-1") == record
    ids = [m.message_id for m in gateway.publisher.to(ORDER_STATUS)]
    assert len(ids) == 6 and len(set(ids)) == 3  # the repeats carry the same ids: deduplicated


def test_asking_for_approval_announces_the_request_and_records_the_wait() -> None:
    gateway = fake_gateway()
    due = (NOW + timedelta(days=3)).isoformat()
    request = {
        "request_id": "o-1-s1-manager",
        "order_id": "o-1",
        "customer_id": "c-1",
        "amount": "1200.00",
        "currency": "EUR",
        "tier": "manager",
        "stage": 1,
        "due_at": due,
        "reason": "1200.00 EUR needs manager approval",
    }
    stage = {"stage": 1, "tier": "manager", "due_at": due}
    make_activities(gateway)[ADVANCE_ORDER](
        None,
        [
            status("received", "1200.00 EUR"),
            {"kind": "request", "data": request},
            status("awaiting_approval", "manager approval due", approval=stage),
        ],
    )
    (asked,) = gateway.publisher.to(APPROVAL_REQUESTS)
    assert asked.request_id == "o-1-s1-manager"
    assert [m.status for m in gateway.publisher.to(ORDER_STATUS)] == [
        "received",
        "awaiting_approval",
    ]
    record = load(gateway.state, "o-1")
    assert record is not None and record.status == "awaiting_approval"
    assert record.approval is not None and record.approval.tier == "manager"
    assert entry(gateway.state, "order-o-1") is None  # not the last step: not indexed here


def test_a_failed_publish_fails_the_activity_and_the_retry_finishes_the_steps() -> None:
    gateway = fake_gateway()
    advance = make_activities(gateway)[ADVANCE_ORDER]
    gateway.publisher.down = True
    with pytest.raises(Transient):
        advance(None, auto_approved())
    assert entry(gateway.state, "order-o-1") is None  # the index waits for the announcements
    gateway.publisher.down = False
    advance(None, auto_approved())
    assert [m.status for m in gateway.publisher.to(ORDER_STATUS)] == [
        "received",
        "approved",
        "completed",
    ]
