"""Who may decide an approval, as the inbox says it and as POST .../decisions enforces it."""

from datetime import UTC, datetime

import pytest

from approvals.domain import (
    AlreadyDecided,
    ApprovalExpired,
    ApprovalView,
    NotAuthorised,
    UnknownApproval,
    check_can_decide,
    why_not_decide,
)
from contracts.messages import Tier

DUE = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def view(status: str = "pending", tier: Tier = Tier.VP) -> ApprovalView:
    return ApprovalView(
        order_id="o-1",
        customer_id="c-1",
        amount="9000.00",
        currency="EUR",
        status=status,
        tier=tier,
        stage=1,
        due_at=DUE,
        decided_by=None if status == "pending" else "val",
    )


@pytest.mark.parametrize(
    ("status", "tier", "approver", "level", "why"),
    [
        ("pending", Tier.MANAGER, "vic", None, "vic is not an approver"),
        ("expired", Tier.MANAGER, "bob", Tier.MANAGER, "the approval expired"),
        ("approved", Tier.MANAGER, "bob", Tier.MANAGER, "already approved"),
        ("pending", Tier.VP, "bob", Tier.MANAGER, "a manager may not decide a VP stage"),
        ("pending", Tier.MANAGER, "C-1", Tier.VP, "approvers may not decide their own order"),
        ("pending", Tier.VP, "val", Tier.VP, None),
        ("pending", Tier.MANAGER, "val", Tier.VP, None),
    ],
)
def test_the_inbox_says_why_not(
    status: str, tier: Tier, approver: str, level: Tier | None, why: str | None
) -> None:
    assert why_not_decide(status, tier, "c-1", approver, level) == why


def test_a_vp_may_decide_a_vp_stage_and_a_manager_may_not() -> None:
    pending = view()
    assert check_can_decide(pending, "o-1", "val", Tier.VP) is pending
    with pytest.raises(NotAuthorised) as refused:
        check_can_decide(pending, "o-1", "bob", Tier.MANAGER)
    assert (
        str(refused.value) == "a manager may not decide a VP stage (order o-1 is at the vp stage)"
    )


@pytest.mark.parametrize(
    ("stored", "error", "says"),
    [
        (None, UnknownApproval, "no approval is waiting for order 'o-1'"),
        (view("expired"), ApprovalExpired, "the approval of order o-1 expired"),
        (view("rejected"), AlreadyDecided, "order o-1 was already rejected by val"),
    ],
)
def test_a_decision_is_refused_saying_why(
    stored: ApprovalView | None, error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as refused:
        check_can_decide(stored, "o-1", "val", Tier.VP)
    assert str(refused.value) == says
