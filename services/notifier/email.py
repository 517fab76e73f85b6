"""The e-mail channel: one message per recipient, sent through Dapr's SMTP output binding.

An approval request goes to every approver of the stage's tier (from the token table's
principals, addressed `<principal>@EMAIL_DOMAIN` unless EMAIL_APPROVERS names their address),
each with Approve and Reject links signed for them alone (contracts.links). An order's status
goes to its customer (`<customer_id>@CUSTOMER_EMAIL_DOMAIN`) as a fixed text: never who decided
or why. The message is HTML from templates/ (Dapr's SMTP binding sends one text/html part; a
mail client shows its text where it cannot show HTML).

Every address is checked against settings.ADDRESS (one plain address) before anything is sent:
ids come from outside (a customer id may hold ";" or "@", and Dapr's SMTP binding splits
`emailTo` at ";"), so a recipient whose address is not one plain address is skipped, logged,
and recorded as skipped in the delivery log, never written to.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from string import Template
from zoneinfo import ZoneInfo

from contracts.links import Action, DecisionLink, make_token
from contracts.messages import Tier
from contracts.signing import Signer
from notifier.channels import Skipped
from notifier.domain import Notification
from notifier.settings import ADDRESS, NotifierSettings
from plumbing.auth import Principal, Role
from plumbing.gateway import Bindings

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"


@cache
def template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text())


@dataclass(frozen=True)
class Recipient:
    id: str  # the approver's principal id, or "customer"
    address: str


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


def local_time(at: datetime, zone: str) -> str:
    """'2026-11-26 14:00 CET (13:00 UTC)'; just UTC when the zone is UTC."""
    utc = at.astimezone(UTC)
    if zone == "UTC":
        return f"{utc:%Y-%m-%d %H:%M} UTC"
    here = at.astimezone(ZoneInfo(zone))
    return f"{here:%Y-%m-%d %H:%M %Z} ({utc:%H:%M} UTC)"


def approvers_of(
    tier: Tier, principals: Iterable[Principal], settings: NotifierSettings
) -> list[Recipient]:
    """The approvers of a tier with an address, by principal id (once each)."""
    found: dict[str, Recipient] = {}
    for p in principals:
        if Role.APPROVER not in p.roles or p.level is not tier:
            continue
        address = settings.email_approvers.get(p.id) or (
            f"{p.id}@{settings.email_domain}" if settings.email_domain else ""
        )
        if address:
            found[p.id] = Recipient(p.id, address)
    return [found[k] for k in sorted(found)]


def customer_of(note: Notification, settings: NotifierSettings) -> Recipient | None:
    if not (note.customer_id and settings.customer_email_domain):
        return None
    return Recipient("customer", f"{note.customer_id}@{settings.customer_email_domain}")


def links_for(note: Notification, approver_id: str, signer: Signer, base: str) -> dict[Action, str]:
    """The approver's Approve and Reject URLs: one signed link, used once, due with the stage."""
    assert note.tier is not None and note.stage is not None and note.due_at is not None
    link = DecisionLink(
        approver_id=approver_id,
        order_id=note.order_id,
        stage=note.stage,
        tier=note.tier,
        expires_at=note.due_at,
    )
    token = make_token(link, signer)
    return {action: f"{base}/links/{action.value}/{token}" for action in Action}


def approver_mail(
    note: Notification,
    to: Recipient,
    settings: NotifierSettings,
    signer: Signer | None,
) -> Mail:
    assert note.tier is not None and note.due_at is not None
    e = html.escape
    actions = template("no-links.html").substitute(order_id=e(note.order_id))
    base = settings.decision_link_base.rstrip("/")
    if signer is not None and base:
        urls = links_for(note, to.id, signer, base)
        actions = template("links.html").substitute(
            approve_url=e(urls[Action.APPROVE]),
            reject_url=e(urls[Action.REJECT]),
            inbox_url=e(f"{base}/console#view=inbox"),
        )
    body = template("approver.html").substitute(
        name=e(to.id),
        order_id=e(note.order_id),
        amount=e(note.amount_text or ""),
        tier=e(note.tier.value),
        stage=note.stage,
        due=e(local_time(note.due_at, settings.email_timezone)),
        why=f"<p><b>Why you:</b> {e(note.why)}</p>" if note.why else "",
        actions=actions,
    )
    prefix = "Reminder: approval" if note.reminder else "Approval"
    subject = f"{prefix} needed: order {note.order_id}, {note.amount_text} ({note.tier.value})"
    return Mail(to.address, subject, body)


def customer_mail(note: Notification, to: Recipient, settings: NotifierSettings) -> Mail:
    """Only the fixed text the domain chose for the status: no approver, no reason."""
    body = template("customer.html").substitute(
        text=html.escape(note.text),
        order_id=html.escape(note.order_id),
        when=html.escape(local_time(note.at, settings.email_timezone)),
    )
    return Mail(to.address, note.subject, body)


class EmailChannel:
    """Sends one composed e-mail through the SMTP binding; one channel per recipient, so each
    recipient is written to once per notification, whatever happens to the others."""

    def __init__(self, bindings: Bindings, binding: str, recipient: str, mail: Mail) -> None:
        self._bindings, self._binding, self._mail = bindings, binding, mail
        self.name = f"email:{recipient}"

    def send(self, note: Notification) -> None:
        self._bindings.invoke(
            self._binding,
            "create",
            self._mail.body.encode(),
            {"emailTo": self._mail.to, "subject": self._mail.subject},
        )


def email_channels(
    bindings: Bindings,
    note: Notification,
    settings: NotifierSettings,
    principals: Iterable[Principal],
    signer: Signer | None,
) -> list[EmailChannel | Skipped]:
    """A channel per recipient of this notification; Skipped for an address that is not one
    plain address."""
    if note.audience == "customer":
        customer = customer_of(note, settings)
        recipients = [customer] if customer else []
    else:
        assert note.tier is not None
        recipients = approvers_of(note.tier, principals, settings)
    chosen: list[EmailChannel | Skipped] = []
    for r in recipients:
        if not ADDRESS.fullmatch(r.address):
            reason = f"{r.address!r} is not one plain e-mail address"
            log.warning("not e-mailing %s about %s: %s", r.id, note.id, reason)
            chosen.append(Skipped(f"email:{r.id}", reason))
            continue
        if note.audience == "customer":
            mail = customer_mail(note, r, settings)
        else:
            mail = approver_mail(note, r, settings, signer)
        chosen.append(EmailChannel(bindings, settings.email_binding, r.id, mail))
    return chosen
