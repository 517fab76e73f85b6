"""The notifier's e-mail channel: whom it writes to, what the mail says, once per recipient."""

from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

import pytest

from contracts.links import read_token
from contracts.messages import ApprovalReminded, ApprovalRequested, OrderStatusChanged, Tier
from contracts.signing import Verifier
from notifier.app import create_app
from notifier.channels import Skipped
from notifier.domain import for_approval_request
from notifier.email import email_channels, local_time
from notifier.settings import NotifierSettings, SettingsError
from plumbing.auth import Principal, Role
from tests.fakes import FakeBindings, FakeSecrets, dev_signer
from tests.service.conftest import AppFactory, deliver

DUE = datetime(2026, 11, 26, 13, tzinfo=UTC)
EMAIL = NotifierSettings(
    app_id="notifier",
    channels=("email",),
    email_domain="example.test",
    customer_email_domain="customers.example.test",
    email_timezone="Europe/Berlin",
    decision_link_base="http://127.0.0.1:8102",
)


def request(stage: int = 1, tier: Tier = Tier.MANAGER, reason: str = "") -> ApprovalRequested:
    return ApprovalRequested(
        request_id=ApprovalRequested.make_id("o-1", stage, tier),
        order_id="o-1",
        customer_id="alice",
        amount="1200.5",
        currency="EUR",
        tier=tier,
        stage=stage,
        due_at=DUE,
        reason=reason,
    )


def sent(gateway) -> dict[str, tuple[str, str]]:
    """{address: (subject, body)} of every mail sent through the binding."""
    out = {}
    for name, operation, data, meta in gateway.bindings.calls:
        assert (name, operation) == ("notify-email", "create")
        out[meta["emailTo"]] = (meta["subject"], data.decode())
    return out


def test_every_manager_gets_a_mail_with_links_of_their_own_once(
    client: AppFactory, gateway
) -> None:
    notifier = client(create_app, EMAIL)
    assert deliver(notifier, "approval-requests", request())["status"] == "SUCCESS"
    assert deliver(notifier, "approval-requests", request())["reason"] == "already delivered"
    mails = sent(gateway)
    assert sorted(mails) == ["bob@example.test", "mia@example.test"]  # managers, not VPs
    subject, body = mails["bob@example.test"]
    assert subject == "Approval needed: order o-1, 1200.50 EUR (manager)"
    assert "1200.50 EUR" in body and "stage 1" in body
    assert "2026-11-26 14:00 CET (13:00 UTC)" in body
    keys = Verifier.from_secret(FakeSecrets().get("localsecretstore", "notifier-verify-keys"))
    urls = [w.split('"')[0] for w in body.split('href="')[1:] if "/links/" in w]
    assert [urlparse(u).path.split("/")[2] for u in urls] == ["approve", "reject"]
    link = read_token(urls[0].rsplit("/", 1)[1], keys)
    assert (link.approver_id, link.order_id, link.stage, link.expires_at) == ("bob", "o-1", 1, DUE)
    (note,) = notifier.get("/notifications", params={"order_id": "o-1"}).json()
    assert sorted(note["delivered"]) == ["email:bob", "email:mia"]


def test_an_escalation_mail_goes_to_the_vps_and_says_why(client: AppFactory, gateway) -> None:
    notifier = client(create_app, EMAIL)
    why = "the manager did not decide in time; escalated to a VP"
    escalated = request(stage=2, tier=Tier.VP, reason=why)
    assert deliver(notifier, "approval-requests", escalated)["status"] == "SUCCESS"
    mails = sent(gateway)
    assert sorted(mails) == ["val@example.test", "vera@example.test"]
    assert why in mails["val@example.test"][1]


def test_the_customer_is_told_the_status_and_nothing_of_who_decided(
    client: AppFactory, gateway
) -> None:
    notifier = client(create_app, EMAIL)
    status = OrderStatusChanged(
        order_id="o-1", status="rejected", at=DUE, detail="by bob: too dear", customer_id="alice"
    )
    assert deliver(notifier, "order-status", status)["status"] == "SUCCESS"
    ((subject, body),) = sent(gateway).values()
    assert list(sent(gateway)) == ["alice@customers.example.test"]
    assert subject == "Order o-1: rejected"
    assert "Your order o-1 was not approved." in body
    assert "bob" not in body and "too dear" not in body


def test_a_customer_id_that_would_add_recipients_is_skipped_and_logged(
    client: AppFactory, gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Dapr's SMTP binding splits `emailTo` at ";": this id must not reach evil@attacker."""
    notifier = client(create_app, EMAIL)
    evil = "evil@attacker.example;x"
    status = OrderStatusChanged(order_id="o-1", status="approved", at=DUE, customer_id=evil)
    assert deliver(notifier, "order-status", status)["status"] == "SUCCESS"
    assert gateway.bindings.calls == []
    (note,) = notifier.get("/notifications", params={"order_id": "o-1"}).json()
    assert note["delivered"] == {}
    assert note["skipped"] == {
        "email:customer": "'evil@attacker.example;x@customers.example.test' is not one plain "
        "e-mail address"
    }
    assert any("not e-mailing customer" in r.getMessage() for r in caplog.records)


def test_an_approver_whose_address_is_not_one_address_is_skipped_the_others_mailed() -> None:
    principals = [
        Principal("bob", frozenset({Role.APPROVER}), Tier.MANAGER),
        Principal("x;evil@attacker.example", frozenset({Role.APPROVER}), Tier.MANAGER),
    ]
    note = for_approval_request(request(), DUE)
    channels = email_channels(FakeBindings(), note, EMAIL, principals, None)
    assert [(c.name, isinstance(c, Skipped)) for c in channels] == [
        ("email:bob", False),
        ("email:x;evil@attacker.example", True),
    ]


def test_a_status_without_its_customer_sends_no_mail(client: AppFactory, gateway) -> None:
    notifier = client(create_app, EMAIL)
    status = OrderStatusChanged(order_id="o-2", status="received", at=DUE)
    assert deliver(notifier, "order-status", status)["status"] == "SUCCESS"
    assert gateway.bindings.calls == []


def test_a_relay_that_is_down_is_tried_again_and_nothing_is_marked_sent(
    client: AppFactory, gateway
) -> None:
    notifier = client(create_app, EMAIL)
    gateway.bindings.failing = True
    assert deliver(notifier, "approval-requests", request())["status"] == "RETRY"
    assert notifier.get("/notifications", params={"order_id": "o-1"}).json() == []
    gateway.bindings.failing = False
    assert deliver(notifier, "approval-requests", request())["status"] == "SUCCESS"
    assert len(gateway.bindings.calls) == 2


def test_without_a_link_base_the_mail_says_where_to_decide(client: AppFactory, gateway) -> None:
    settings = NotifierSettings(app_id="notifier", channels=("email",), email_domain="x.test")
    notifier = client(create_app, settings)
    assert deliver(notifier, "approval-requests", request())["status"] == "SUCCESS"
    body = sent(gateway)["bob@x.test"][1]
    assert "/links/" not in body and "POST /approvals/o-1/decisions" in body


def test_named_addresses_win_over_the_domain() -> None:
    env = {"NOTIFY_CHANNELS": "email", "EMAIL_APPROVERS": "bob=robert@corp.example"}
    settings = NotifierSettings.from_env(env=env)
    assert settings.email_approvers == {"bob": "robert@corp.example"}


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"EMAIL_APPROVERS": "bob"}, "not principal=address"),
        ({"EMAIL_APPROVERS": "bob=a@b.c;d@e.f"}, "not principal=address"),
        ({"EMAIL_DOMAIN": "not a domain"}, "not a mail domain"),
        ({"EMAIL_TIMEZONE": "Mars/Olympus"}, "no time zone"),
    ],
)
def test_bad_email_settings_are_refused_with_the_setting_named(env, says) -> None:
    with pytest.raises(SettingsError, match=says):
        NotifierSettings.from_env(env=env)


def test_due_times_show_their_zone() -> None:
    assert local_time(DUE, "UTC") == "2026-11-26 13:00 UTC"
    assert local_time(DUE + timedelta(days=200), "Europe/Berlin").endswith("CEST (13:00 UTC)")


def test_a_reminder_is_mailed_once_to_the_stages_approvers(client: AppFactory, gateway) -> None:
    notifier = client(create_app, EMAIL)
    reminder = ApprovalReminded.model_validate(
        request(reason="a reminder: nobody has decided yet").model_dump()
        | {"request_id": ApprovalReminded.reminder_id("o-1", 1, Tier.MANAGER)}
    )
    assert deliver(notifier, "approval-requests", request())["status"] == "SUCCESS"
    for _ in range(2):
        assert deliver(notifier, "approval-reminders", reminder)["status"] == "SUCCESS"
    bobs = [m for n, o, d, m in gateway.bindings.calls if m["emailTo"] == "bob@example.test"]
    assert [m["subject"].split(":")[0] for m in bobs] == ["Approval needed", "Reminder"]
    refused = deliver(notifier, "approval-reminders", reminder, signed=dev_signer("orders"))
    assert refused["status"] == "DROP"  # only the approval workflow reminds
