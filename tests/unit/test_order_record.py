"""The order record moves forward only, and says how a finished workflow ended."""

from datetime import UTC, datetime

import pytest

from orders.readmodel import OrderRecord, RecordStatus, advance, ending
from plumbing.gateway import InstanceState

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def rec(status: str, stage: int | None = None, **more) -> OrderRecord:
    approval = {"stage": stage, "tier": "vp", "due_at": AT} if stage else None
    return OrderRecord.model_validate(
        {"order_id": "o-1", "status": status, "approval": approval, "updated_at": AT, **more}
    )


def test_a_new_record_is_the_first_change() -> None:
    assert advance(None, rec("accepted")) == rec("accepted")


@pytest.mark.parametrize(
    ("current", "change"),
    [
        ("received", "accepted"),
        ("awaiting_approval", "received"),
        ("approved", "awaiting_approval"),
        ("completed", "approved"),
        ("completed", "terminated"),
        ("rejected", "completed"),
        ("received", "received"),
    ],
)
def test_old_news_changes_nothing(current: str, change: str) -> None:
    assert advance(rec(current), rec(change)) is None


def test_a_step_forward_keeps_what_the_record_knew() -> None:
    known = rec("accepted", amount_text="1200.00 EUR", accepted_at=AT)
    moved = advance(known, OrderRecord(order_id="o-1", status=RecordStatus.RECEIVED))
    assert moved is not None and moved.status is RecordStatus.RECEIVED
    assert (moved.amount_text, moved.accepted_at) == ("1200.00 EUR", AT)


def test_at_the_same_step_only_a_later_approval_stage_is_news() -> None:
    assert advance(rec("awaiting_approval", 1), rec("awaiting_approval", 2)) is not None
    assert advance(rec("awaiting_approval", 2), rec("awaiting_approval", 2)) is None
    assert advance(rec("awaiting_approval", 2), rec("awaiting_approval", 1)) is None
    assert advance(rec("awaiting_approval"), rec("awaiting_approval", 2)) is not None


def workflow(status: str, output: str | None = None, failure: str | None = None) -> InstanceState:
    return InstanceState("order-o-1", "order_workflow", status, AT, AT, None, None, output, failure)


def test_a_running_workflow_has_not_ended() -> None:
    assert ending("o-1", workflow("RUNNING")) is None


def test_how_a_workflow_ended_becomes_the_record_s_end() -> None:
    stopped = ending("o-1", workflow("TERMINATED", '{"terminated": true, "by": "olga"}'))
    assert stopped is not None and stopped.status is RecordStatus.TERMINATED
    assert stopped.terminated == {"terminated": True, "by": "olga"}
    failed = ending("o-1", workflow("FAILED", failure="boom"))
    assert failed is not None and (failed.status, failed.failure) == (RecordStatus.FAILED, "boom")
    expired = '{"status": "expired", "reason": "approval_timeout"}'
    done = ending("o-1", workflow("COMPLETED", expired))
    assert done is not None and done.status is RecordStatus.EXPIRED
    assert done.result == {"status": "expired", "reason": "approval_timeout"}
