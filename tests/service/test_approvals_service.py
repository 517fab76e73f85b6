from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from approvals.app import create_app
from approvals.domain import ApprovalView
from approvals.readmodel import INDEX_KEY, save_view
from contracts.messages import ApprovalRequested, DecisionSubmitted, Tier
from contracts.money import Valuation
from contracts.policy import load_policy
from plumbing.settings import ServiceSettings
from tests.fakes import bearer
from tests.service.conftest import AppFactory, deliver

NOW = datetime.now(UTC)


def request(
    stage: int = 1, tier: Tier = Tier.MANAGER, amount: str = "1200.00", currency: str = "EUR"
) -> ApprovalRequested:
    return ApprovalRequested(
        request_id=ApprovalRequested.make_id("o-1", stage, tier),
        order_id="o-1",
        customer_id="c-1",
        amount=amount,
        currency=currency,
        tier=tier,
        stage=stage,
        due_at=NOW,
    )


def decision(decided_at: datetime | None = None, decision_id: str = "d-1") -> DecisionSubmitted:
    return DecisionSubmitted(
        decision_id=decision_id,
        order_id="o-1",
        approved=True,
        approver_id="m-1",
        approver_role="manager",
        decided_at=decided_at or datetime.now(UTC),
    )


def view(status: str = "pending", tier: Tier = Tier.MANAGER, customer: str = "c-1") -> ApprovalView:
    return ApprovalView(
        order_id="o-1",
        customer_id=customer,
        amount="1200.00",
        currency="EUR",
        status=status,
        tier=tier,
        stage=1,
        due_at=NOW + timedelta(days=3),
        decided_by="v-1" if status != "pending" else None,
    )


@pytest.fixture
def approvals(client: AppFactory) -> TestClient:
    return client(create_app, ServiceSettings(app_id="approvals", decision_hold_s=60))


def test_request_schedules_one_approval_workflow(approvals: TestClient, gateway) -> None:
    assert deliver(approvals, "approval-requests", request())["status"] == "SUCCESS"
    assert deliver(approvals, "approval-requests", request())["reason"] == "duplicate request"
    assert [(n, i) for n, i, _ in gateway.workflows.scheduled] == [
        ("approval_workflow", "approval-o-1")
    ]


def test_escalation_request_from_our_own_workflow_is_not_scheduled_again(
    approvals: TestClient, gateway
) -> None:
    answer = deliver(approvals, "approval-requests", request(stage=2, tier=Tier.VP))
    assert answer["status"] == "SUCCESS" and not gateway.workflows.scheduled


def test_decision_before_its_approval_is_held_then_dead_lettered(approvals: TestClient) -> None:
    held = deliver(approvals, "decisions", decision())
    assert held["status"] == "RETRY" and "does not exist yet" in held["reason"]
    stale = deliver(
        approvals, "decisions", decision(datetime.now(UTC) - timedelta(minutes=5), "d-2")
    )
    assert stale["status"] == "DROP" and "within 60s" in stale["reason"]


def test_decision_is_raised_once_per_decision_id(approvals: TestClient, gateway) -> None:
    gateway.workflows.add("approval-o-1")
    assert deliver(approvals, "decisions", decision())["status"] == "SUCCESS"
    assert deliver(approvals, "decisions", decision())["reason"] == "duplicate decision"
    assert [(i, e) for i, e, _ in gateway.workflows.raised] == [("approval-o-1", "decision")]


def test_decision_for_a_finished_approval_has_no_effect(approvals: TestClient, gateway) -> None:
    gateway.workflows.add("approval-o-1", "COMPLETED")
    assert "no effect" in deliver(approvals, "decisions", decision())["reason"]
    assert not gateway.workflows.raised


def post(approvals: TestClient, who: str = "manager"):
    return approvals.post(
        "/approvals/o-1/decisions", json={"approved": True, "reason": "ok"}, headers=bearer(who)
    )


@pytest.mark.parametrize(
    ("stored", "who", "code", "says"),
    [
        (None, "manager", 404, "no approval is waiting"),
        (view(tier=Tier.VP), "manager", 403, "manager may not decide a VP stage"),
        (view(customer="bob"), "manager", 403, "own order"),
        (view("approved"), "manager", 409, "already approved"),
        (view("expired"), "vp", 410, "expired"),
        (view(), "viewer", 403, "vic may not do this: it needs approver"),
        (view(), "operator", 403, "needs approver"),
    ],
)
def test_decision_api_refuses_clearly_and_audits_it(
    approvals: TestClient, gateway, stored, who, code, says
) -> None:
    if stored:
        save_view(gateway.state, stored)
    resp = post(approvals, who)
    assert resp.status_code == code and says in resp.json()["detail"]
    assert not gateway.publisher.published
    (entry,) = approvals.get("/audit", params={"action": "post_decision"}).json()
    assert entry["outcome"].startswith(f"refused {code}") and entry["target"] == "o-1"


def test_valid_decision_takes_the_approver_from_the_token(approvals: TestClient, gateway) -> None:
    save_view(gateway.state, view())
    resp = post(approvals, "manager")
    assert resp.status_code == 202
    (msg,) = gateway.publisher.to("decisions")
    assert msg.message_id == resp.json()["decision_id"]
    assert (msg.approver_id, msg.approver_role) == ("bob", Tier.MANAGER)
    (entry,) = approvals.get("/audit").json()
    assert (entry["actor"], entry["role"]) == ("bob", "approver:manager")
    assert entry["outcome"] == f"ok: approve 1200.00 EUR as {msg.message_id}"


def test_a_vp_decides_a_vp_stage(approvals: TestClient, gateway) -> None:
    save_view(gateway.state, view(tier=Tier.VP))
    resp = post(approvals, "vp")
    assert resp.status_code == 202
    (msg,) = gateway.publisher.to("decisions")
    assert (msg.approver_id, msg.approver_role) == ("val", Tier.VP)


def test_bad_decision_body_is_a_422_with_a_message(approvals: TestClient) -> None:
    resp = approvals.post(
        "/approvals/o-1/decisions", json={"approved": "perhaps"}, headers=bearer("manager")
    )
    assert resp.status_code == 422 and "approved" in resp.json()["detail"]


def test_inbox_filters_by_status_and_tier(approvals: TestClient, gateway) -> None:
    save_view(gateway.state, view())
    assert [r["order_id"] for r in approvals.get("/approvals?status=pending").json()] == ["o-1"]
    assert approvals.get("/approvals?status=pending&tier=vp").json() == []
    assert approvals.get("/approvals?status=bogus").status_code == 422
    assert approvals.get("/approvals/o-1").json()["tier"] == "manager"
    assert approvals.get("/approvals/o-2").status_code == 404


@pytest.mark.parametrize("bad", ["rev-1%0A", "a%7C%7Cb", "o%20"])
def test_bad_order_id_in_the_path_is_422_before_the_sidecar(
    client: AppFactory, gateway, bad
) -> None:
    reader = client(create_app, ServiceSettings(app_id="approvals"), who="viewer")
    approver = client(create_app, ServiceSettings(app_id="approvals"), who="manager")
    for resp in (
        reader.get(f"/approvals/{bad}"),
        approver.post(f"/approvals/{bad}/decisions", json={"approved": True}),
    ):
        assert resp.status_code == 422
        assert resp.json()["detail"].startswith("path.order_id: must be 1-55 characters of A-Z")
    assert gateway.publisher.published == []


JPY_WORTH = Valuation(
    base_currency="EUR", base_amount="1100.00", rate="0.0055", rate_as_of="2026-11-20"
)
JPY_TEXT = "200000 JPY (1100.00 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20)"


def test_inbox_and_approval_show_the_amount_with_the_rate_that_decided_it(
    approvals: TestClient, gateway
) -> None:
    save_view(
        gateway.state,
        view().model_copy(update={"amount": "200000", "currency": "JPY", "valuation": JPY_WORTH}),
    )
    (row,) = approvals.get("/approvals?status=pending").json()
    assert (row["amount"], row["currency"], row["amount_text"]) == ("200000", "JPY", JPY_TEXT)
    one = approvals.get("/approvals/o-1").json()
    assert one["amount_text"] == JPY_TEXT
    assert one["valuation"] == {
        "base_currency": "EUR",
        "base_amount": "1100.00",
        "rate": "0.0055",
        "rate_as_of": "2026-11-20",
    }
    assert post(approvals, "manager").status_code == 202
    (entry,) = approvals.get("/audit").json()
    assert entry["outcome"].startswith(f"ok: approve {JPY_TEXT} as d-")


def test_an_index_line_stored_before_amounts_were_valued_still_reads(
    approvals: TestClient, gateway
) -> None:
    gateway.state.put(
        "approvals-index",
        {
            "o-7": {
                "status": "pending",
                "tier": "manager",
                "due_at": NOW.isoformat(),
                "amount": "2500",
                "currency": "EUR",
            }
        },
    )
    (row,) = approvals.get("/approvals").json()
    assert row["amount_text"] == "2500.00 EUR"


def test_a_request_orders_signed_is_taken_even_without_our_own_rate(
    client: AppFactory, gateway
) -> None:
    """Orders checked the money under the policy the order started with; an approvals app
    whose own policy lacks the rate must not strand the order (rates roll out app by app)."""
    euro_only = ServiceSettings(app_id="approvals", policy=load_policy({"POLICY_RATES": ""}))
    app = client(create_app, euro_only)
    answer = deliver(app, "approval-requests", request(amount="200000", currency="JPY"))
    assert answer["status"] == "SUCCESS"
    assert [iid for _, iid, _ in gateway.workflows.scheduled] == ["approval-o-1"]


def test_a_request_not_signed_by_orders_is_dropped(approvals: TestClient, gateway) -> None:
    answer = deliver(approvals, "approval-requests", request(), signed=False)
    assert answer["status"] == "DROP" and "unsigned" in answer["reason"]
    assert not gateway.workflows.scheduled


def test_inbox_says_what_the_caller_may_decide_and_why_not(client: AppFactory, gateway) -> None:
    def saved(order_id: str, tier: Tier, customer: str = "c-1", status: str = "pending") -> None:
        save_view(
            gateway.state, view(status, tier, customer).model_copy(update={"order_id": order_id})
        )

    saved("o-mgr", Tier.MANAGER)
    saved("o-vp", Tier.VP)
    saved("o-bobs", Tier.MANAGER, customer="bob")
    saved("o-done", Tier.MANAGER, status="approved")

    def seen(who: str, status: str | None = "pending") -> dict[str, tuple[bool, str | None]]:
        settings = ServiceSettings(app_id="approvals")
        rows = client(create_app, settings, who=who).get(
            "/approvals", params={"status": status} if status else {}
        )
        return {r["order_id"]: (r["can_decide"], r["why_not"]) for r in rows.json()}

    assert seen("manager") == {
        "o-mgr": (True, None),
        "o-vp": (False, "a manager may not decide a VP stage"),
        "o-bobs": (False, "approvers may not decide their own order"),
    }
    assert seen("vp") == {"o-mgr": (True, None), "o-vp": (True, None), "o-bobs": (True, None)}
    assert seen("manager", None)["o-done"] == (False, "already approved")
    assert set(seen("viewer").values()) == {(False, "vic is not an approver")}
    assert set(seen("admin").values()) == {(False, "ada is not an approver")}


def test_inbox_reads_the_customer_of_an_index_line_written_before_it_was_kept(
    approvals: TestClient, gateway
) -> None:
    save_view(gateway.state, view(customer="bob"))
    index, etag = gateway.state.get(INDEX_KEY)
    del index["o-1"]["customer_id"]
    gateway.state.put(INDEX_KEY, index, etag=etag)
    (row,) = approvals.get("/approvals", headers=bearer("manager")).json()
    assert (row["customer_id"], row["can_decide"]) == ("bob", False)


def test_the_inbox_shows_an_amount_with_more_places_than_babel_gives_as_accepted(
    client: AppFactory, gateway
) -> None:
    policy = load_policy({"POLICY_RATES": "IQD=0.00066@2026-11-20", "POLICY_MINOR_UNITS": "IQD=3"})
    app = client(create_app, ServiceSettings(app_id="approvals", policy=policy))
    worth = policy.value(Decimal("1500000.875"), "IQD")
    save_view(
        gateway.state,
        view().model_copy(update={"amount": "1500000.875", "currency": "IQD", "valuation": worth}),
    )
    text = "1500000.875 IQD (990.00 EUR; 1 IQD = 0.00066 EUR as of 2026-11-20)"
    (row,) = app.get("/approvals?status=pending").json()
    assert row["amount_text"] == text
    assert app.get("/approvals/o-1").json()["amount_text"] == text


@pytest.mark.parametrize(
    ("reason", "found"),
    [
        ("fine\n2026-01-01 notifier INFO forged", "U+000A (line feed) at character 5"),
        ("ok\x00", "U+0000 (NUL) at character 3"),
        ("ding\x07", "U+0007 (BEL) at character 5"),
        ("\u202edevorppa", "U+202E (right-to-left override) at character 1"),
    ],
)
def test_a_decision_reason_with_control_characters_is_a_clear_422(
    approvals: TestClient, gateway, reason: str, found: str
) -> None:
    save_view(gateway.state, view())
    resp = approvals.post(
        "/approvals/o-1/decisions",
        json={"approved": False, "reason": reason},
        headers=bearer("manager"),
    )
    assert resp.status_code == 422
    said = resp.json()["detail"]
    assert said.startswith("reason: must be plain text without control characters")
    assert said.endswith(f"found {found}")
    assert not gateway.publisher.published
    (entry,) = approvals.get("/audit").json()
    assert entry["outcome"].startswith("refused 422: reason: must be plain text")
