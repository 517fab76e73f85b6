from datetime import timedelta
from decimal import Decimal

import pytest

from contracts.messages import Tier
from contracts.policy import (
    ApprovalPolicy,
    OnManagerTimeout,
    PolicyError,
    authority_problem,
    covers,
    load_policy,
    parse_duration,
)

DEFAULT = ApprovalPolicy()


@pytest.mark.parametrize(
    ("amount", "tier"),
    [
        ("0.01", None),
        ("499.99", None),
        ("500.00", Tier.MANAGER),
        ("5000.00", Tier.MANAGER),
        ("5000.01", Tier.VP),
        ("9999999.99", Tier.VP),
    ],
)
def test_tier_boundaries(amount: str, tier: Tier | None) -> None:
    assert DEFAULT.tier_for(Decimal(amount)) == tier


def test_defaults_are_the_business_rules() -> None:
    assert DEFAULT.manager_deadline == timedelta(days=3)
    assert DEFAULT.vp_deadline == timedelta(days=5)
    assert DEFAULT.on_manager_timeout is OnManagerTimeout.ESCALATE_TO_VP


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("72h", timedelta(hours=72)),
        ("1h30m", timedelta(minutes=90)),
        ("5s", timedelta(seconds=5)),
        ("500ms", timedelta(milliseconds=500)),
        ("PT5S", timedelta(seconds=5)),
        ("P3D", timedelta(days=3)),
        ("P1DT12H", timedelta(hours=36)),
        ("pt2m", timedelta(minutes=2)),
    ],
)
def test_durations_go_style_and_iso(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3 days", "P", "PT", "72", "h", "-5s", "5x"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="Go style"):
        parse_duration(text)


def test_env_overrides_and_snapshot_round_trip() -> None:
    policy = load_policy(
        {
            "POLICY_MANAGER_DEADLINE": "PT5S",
            "POLICY_VP_DEADLINE": "7s",
            "POLICY_ORDER_BACKSTOP": "1m",
            "POLICY_CURRENCIES": "EUR, USD",
        }
    )
    assert policy.manager_deadline == timedelta(seconds=5)
    assert policy.currencies == frozenset({"EUR", "USD"})
    assert ApprovalPolicy.model_validate(policy.snapshot()) == policy


def test_policy_file_with_a_bad_value_names_the_field(tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("manager_deadline: soon\nauto_approve_below: 500\n")
    with pytest.raises(PolicyError, match="manager_deadline"):
        load_policy({"POLICY_FILE": str(path)})


def test_backstop_shorter_than_the_longest_approval_is_refused() -> None:
    with pytest.raises(PolicyError, match="order_backstop"):
        load_policy({"POLICY_ORDER_BACKSTOP": "72h"})


def test_unknown_setting_is_refused(tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("manager_dedline: 3d\n")
    with pytest.raises(PolicyError, match="manager_dedline"):
        load_policy({"POLICY_FILE": str(path)})


@pytest.mark.parametrize(
    ("stage", "approver", "role", "problem"),
    [
        (Tier.MANAGER, "m1", Tier.MANAGER, None),
        (Tier.MANAGER, "v1", Tier.VP, None),
        (Tier.VP, "v1", Tier.VP, None),
        (Tier.VP, "m1", Tier.MANAGER, "manager may not"),
        (Tier.MANAGER, "cust-1", Tier.MANAGER, "own order"),
        (Tier.VP, "cust-1", Tier.VP, "own order"),
    ],
)
def test_authority(stage: Tier, approver: str, role: Tier, problem: str | None) -> None:
    found = authority_problem(
        stage_tier=stage, approver_id=approver, approver_role=role, customer_id="cust-1"
    )
    assert (found is None) if problem is None else (problem in (found or ""))


@pytest.mark.parametrize("customer", ["bob", "Bob", "BOB", "\uff42\uff4f\uff42", " bob"])
def test_nobody_decides_their_own_order_however_it_is_spelled(customer: str) -> None:
    problem = authority_problem(
        stage_tier=Tier.MANAGER, approver_id="bob", approver_role=Tier.MANAGER, customer_id=customer
    )
    assert problem == "approvers may not decide their own order"


def test_another_person_may_decide() -> None:
    assert (
        authority_problem(
            stage_tier=Tier.MANAGER,
            approver_id="bob",
            approver_role=Tier.MANAGER,
            customer_id="bobby",
        )
        is None
    )


@pytest.mark.parametrize(
    ("decided_at", "needed", "enough"),
    [
        (Tier.MANAGER, Tier.MANAGER, True),
        (Tier.VP, Tier.MANAGER, True),
        (Tier.VP, Tier.VP, True),
        (Tier.MANAGER, Tier.VP, False),
        (None, Tier.MANAGER, False),
    ],
)
def test_an_approval_covers_its_own_level_and_below(
    decided_at: Tier | None, needed: Tier, enough: bool
) -> None:
    assert covers(decided_at, needed) is enough
