"""One-click links: looking decides nothing; confirming decides once, as the link's approver."""

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from approvals.app import create_app
from approvals.domain import ApprovalView
from approvals.readmodel import save_view
from contracts.links import DecisionLink, make_token
from contracts.messages import DecisionSubmitted, Tier
from contracts.signing import Signer
from contracts.topics import DECISIONS
from plumbing.gateway import Transient
from plumbing.settings import ServiceSettings
from tests.fakes import dev_signer
from tests.service.conftest import AppFactory

DUE = datetime.now(UTC) + timedelta(days=3)


def view(stage: int = 1, tier: Tier = Tier.MANAGER, status: str = "pending") -> ApprovalView:
    return ApprovalView(
        order_id="o-1",
        customer_id="alice",
        amount="1200.00",
        currency="EUR",
        status=status,
        tier=tier,
        stage=stage,
        due_at=DUE,
    )


def link(
    who: str = "bob",
    stage: int = 1,
    tier: Tier = Tier.MANAGER,
    expires: datetime = DUE,
    signer: Signer | None = None,
) -> str:
    made = DecisionLink(approver_id=who, order_id="o-1", stage=stage, tier=tier, expires_at=expires)
    return make_token(made, signer or dev_signer("notifier"))


@pytest.fixture
def approvals(client: AppFactory, gateway) -> TestClient:
    save_view(gateway.state, view())
    # No bearer token: a browser opening a link from an e-mail has none.
    app = client(create_app, ServiceSettings(app_id="approvals"))
    app.headers.pop("Authorization")
    return app


def audit(approvals: TestClient) -> list[dict]:
    return approvals.get(
        "/audit",
        params={"action": "decision_link"},
        headers={"Authorization": "Bearer dev-admin-ada"},
    ).json()


def test_opening_a_link_shows_what_it_would_do_and_decides_nothing(
    approvals: TestClient, gateway
) -> None:
    for _ in range(2):  # a mail scanner, then the person
        page = approvals.get(f"/links/approve/{link()}")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "approve</b> order <b>o-1</b> for <b>1200.00 EUR</b>" in page.text
        assert '<form method="post">' in page.text
    assert gateway.publisher.published == []


def test_confirming_decides_once_as_the_links_approver_with_an_audit_record(
    approvals: TestClient, gateway
) -> None:
    token = link()
    done = approvals.post(f"/links/reject/{token}", data={"reason": "too dear"})
    assert done.status_code == 202 and "submitted" in done.text
    ((topic, decision),) = gateway.publisher.published
    assert topic == DECISIONS and isinstance(decision, DecisionSubmitted)
    assert (decision.approver_id, decision.approver_role, decision.approved) == (
        "bob",
        Tier.MANAGER,
        False,
    )
    assert decision.reason == "too dear"
    (entry,) = approvals.get(
        "/audit", params={"target": "o-1"}, headers={"Authorization": "Bearer dev-admin-ada"}
    ).json()
    assert (entry["actor"], entry["action"]) == ("bob", "confirm_link")
    assert entry["outcome"].startswith("ok: reject 1200.00 EUR")
    # The approve link of the same mail is the same link: used up too.
    again = approvals.post(f"/links/approve/{token}")
    assert again.status_code == 410 and "used already" in again.text
    assert "used already" in approvals.get(f"/links/approve/{token}").text
    assert len(gateway.publisher.published) == 1
    assert [e["outcome"][:11] for e in audit(approvals)] == ["refused 410"] * 2


@pytest.mark.parametrize(
    ("token", "code", "says"),
    [
        (link()[:-4] + "AAAA", 400, "altered"),
        (link(signer=dev_signer("approvals")), 400, "not trusted"),
        ("not-a-link", 400, "not a decision link"),
        (link(who="zed"), 403, "zed is no longer an approver"),
        (link(expires=datetime.now(UTC) - timedelta(seconds=1)), 410, "expired"),
        (link(who="val", stage=2, tier=Tier.VP), 409, "now at stage 1 (manager)"),
    ],
)
def test_a_link_that_cannot_decide_gets_a_clear_page_and_an_audit_record(
    approvals: TestClient, gateway, token: str, code: int, says: str
) -> None:
    for method in ("GET", "POST"):
        page = approvals.request(method, f"/links/approve/{token}")
        assert page.status_code == code and says in page.text and "Nothing was decided" in page.text
    assert gateway.publisher.published == []
    entries = audit(approvals)
    assert len(entries) == 2 and all(e["outcome"].startswith(f"refused {code}") for e in entries)


def test_a_decided_approval_refuses_its_links(approvals: TestClient, gateway) -> None:
    save_view(gateway.state, view(status="approved"))
    page = approvals.post(f"/links/approve/{link()}")
    assert page.status_code == 409 and "already approved" in page.text


def test_a_cancelled_order_s_approval_refuses_its_links(approvals: TestClient, gateway) -> None:
    """A reminder e-mailed just before the order was cancelled holds links that decide nothing."""
    closed = view(status="cancelled").model_copy(update={"decided_by": "ada"})
    save_view(gateway.state, closed)
    page = approvals.post(f"/links/approve/{link()}")
    assert page.status_code == 409 and "already cancelled by ada" in page.text
    assert gateway.publisher.published == []


def test_a_link_whose_decision_could_not_be_published_publishes_the_same_decision_again(
    approvals: TestClient, gateway
) -> None:
    token = link()
    gateway.publisher.down = True
    assert approvals.post(f"/links/reject/{token}", data={"reason": "too dear"}).status_code == 503
    gateway.publisher.down = False
    pending = approvals.get(f"/links/approve/{token}")  # says what was submitted, decides nothing
    assert pending.status_code == 200 and "to <b>reject</b>" in pending.text
    assert "not confirmed" in pending.text and gateway.publisher.published == []
    again = approvals.post(f"/links/approve/{token}")  # the button on that page, or the link
    assert again.status_code == 202 and "decision to <b>reject</b>" in again.text
    ((_, decision),) = gateway.publisher.published
    assert (decision.approved, decision.reason) == (False, "too dear")
    claims = [v for k, (v, _) in gateway.state.data.items() if k.startswith("link-used:")]
    assert [(c["decision"]["decision_id"], c["published"]) for c in claims] == [
        (decision.decision_id, True)
    ]


def test_a_link_whose_submitted_decision_then_counted_never_says_nothing_was_decided(
    approvals: TestClient, gateway
) -> None:
    token = link()
    gateway.publisher.down = True
    assert approvals.post(f"/links/approve/{token}").status_code == 503
    gateway.publisher.down = False
    # It went through after all: the approval is decided, by this very decision.
    save_view(gateway.state, view(status="approved").model_copy(update={"decided_by": "bob"}))
    for method in ("GET", "POST"):
        page = approvals.request(method, f"/links/approve/{token}")
        assert (
            page.status_code == 409 and "to approve, and that decision was submitted" in page.text
        )
        assert "Nothing was decided" not in page.text
    assert gateway.publisher.published == []


class DeliveredButTimedOut:
    """A publisher whose first publish reaches the broker but answers the caller with an error."""

    def __init__(self, inner) -> None:
        self.inner, self.failed = inner, False

    def publish(self, topic, message) -> None:
        self.inner.publish(topic, message)
        if not self.failed:
            self.failed = True
            raise Transient("publish timed out")


def test_a_publish_that_timed_out_after_going_through_decides_once(
    approvals: TestClient, gateway
) -> None:
    gateway.publisher = DeliveredButTimedOut(fake := gateway.publisher)
    token = link()
    assert approvals.post(f"/links/approve/{token}").status_code == 503
    assert approvals.post(f"/links/approve/{token}").status_code == 202  # a second click
    later = approvals.post(f"/links/approve/{token}")
    assert later.status_code == 410 and "used already" in later.text
    assert "to approve" in approvals.get(f"/links/approve/{token}").text
    ids = {m.decision_id for m in fake.to(DECISIONS)}
    assert len(fake.published) == 2 and len(ids) == 1  # the approval takes one decision id once


@pytest.mark.parametrize("key", ["link-used:o-1/s1/bob", "link-used:o-1-s1-bob"])
def test_a_link_used_under_its_id_or_the_id_before_it_changed_is_used_up(
    approvals: TestClient, gateway, key: str
) -> None:
    gateway.state.claim(key, {"at": "2026-11-23T10:00:00Z", "action": "approve"})
    page = approvals.post(f"/links/reject/{link()}")
    assert page.status_code == 410 and "to approve" in page.text
    assert gateway.publisher.published == []


def test_an_unknown_action_is_a_404_page(approvals: TestClient) -> None:
    page = approvals.get(f"/links/delete/{link()}")
    assert page.status_code == 404 and "approve or reject" in page.text
