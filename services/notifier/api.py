"""notifier: subscriptions (approval-requests, order-status) and the delivery log API."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from dapr.ext.fastapi import DaprApp
from fastapi import APIRouter, FastAPI, Query

from contracts.messages import TRUSTED, ApprovalReminded, ApprovalRequested, OrderStatusChanged
from contracts.timestamps import rfc3339
from contracts.topics import APPROVAL_REMINDERS, APPROVAL_REQUESTS, ORDER_STATUS
from notifier.channels import Channel, LogChannel, Skipped, WebhookChannel
from notifier.domain import Notification, for_approval_request, for_status_change
from notifier.email import email_channels
from notifier.settings import NotifierSettings
from plumbing.auth import Reader
from plumbing.gateway import Gateway, GatewayError
from plumbing.runtime import load_signer
from plumbing.settings import ServiceSettings
from plumbing.state import update
from plumbing.subscriptions import Answer, keys_of, subscribe
from plumbing.web import GatewayDep

log = logging.getLogger(__name__)


def channels_for(app: FastAPI, settings: NotifierSettings, note: Notification) -> list[Channel]:
    """The channels the settings name for this notification, bound to this app's sidecar."""
    gateway: Gateway = app.state.gateway
    chosen: list[Channel] = []
    for name in settings.channels:
        if name == "log":
            chosen.append(LogChannel())
        elif name == "webhook" and gateway.bindings is not None:
            chosen.append(WebhookChannel(gateway.bindings, settings.webhook_binding))
        elif name == "email" and gateway.bindings is not None:
            principals = app.state.tokens.by_digest.values()
            signer = getattr(app.state, "link_signer", None)
            chosen += email_channels(gateway.bindings, note, settings, principals, signer)
    return chosen


# How long one delivery may hold a channel for a notification before another delivery of the
# same message may try it: longer than the slowest outbound binding call with all its retries
# takes (resiliency.yaml: e-mail 20 s per try, 6 tries, up to 10 s of back-off, about 130 s;
# tests/unit/test_sending_lease.py checks every outbound policy). A crash while sending frees
# it only after this.
SENDING_LEASE = timedelta(seconds=180)
# Channels this process used whose "sent" mark it could not store yet (the store was down just
# then): lease key -> (holder, sent at). A redelivery in this process stores the mark instead
# of waiting for the lease to run out and sending again. Only a process that dies between the
# send and the mark forgets it (see docs/operations.md).
_SENT_HERE: dict[str, tuple[str, str]] = {}


def deliver(gateway: Gateway, note: Notification, channels: list[Channel]) -> Answer:
    """Deliver a notification once per message id and channel, and add it to the order's
    delivery log.

    Messages arrive at least once, and a redelivery can run beside the first delivery (the
    sidecar reclaims a message still being handled after the pub/sub's processing timeout).
    So each channel is taken under a lease before it is used: a second delivery that finds it
    taken answers RETRY while the lease runs, and skips the channel once it is marked sent. A
    failed channel gives its lease back and answers RETRY; nothing is recorded as sent. A
    Skipped channel sends nothing and is recorded under `skipped` with its reason.
    """
    key = f"notification:{note.id}"
    done, _ = gateway.state.get(key)
    if done:
        # The delivery that stored the record may have died (or met a store outage) before
        # adding it to the order's log: adding is idempotent, so every redelivery makes sure.
        _append(gateway, f"notifications-by-order:{note.order_id}", done)
        return Answer.success("already delivered")
    sent: dict[str, str] = {}
    skipped: dict[str, str] = {}
    me = uuid.uuid4().hex
    for channel in channels:
        if isinstance(channel, Skipped):
            skipped[channel.name] = channel.reason
            continue
        if not getattr(channel, "leased", True):
            channel.send(note)
            sent[channel.name] = rfc3339(datetime.now(UTC))
            gateway.metrics.notifications.labels(channel=channel.name, result="delivered").inc()
            continue
        lease_key = f"notification-sending:{note.id}:{channel.name}"
        if known := _SENT_HERE.get(lease_key):  # sent by this process; the mark was not stored
            _mark_sent(gateway, lease_key, *known)
            _SENT_HERE.pop(lease_key, None)
            sent[channel.name] = known[1]
            continue
        taken = _take(gateway, lease_key, me)
        if taken.get("sent_at"):
            sent[channel.name] = taken["sent_at"]
            continue
        if taken.get("holder") is not None:
            return Answer.retry(f"{channel.name} delivery of {note.id} is in progress elsewhere")
        counted = gateway.metrics.notifications
        try:
            channel.send(note)
        except BaseException as exc:
            counted.labels(channel=channel.name, result="failed").inc()
            _release(gateway, lease_key, me)  # whatever went wrong, a retry may send it
            if isinstance(exc, GatewayError):
                return Answer.retry(f"{channel.name} delivery failed: {exc}")
            raise
        counted.labels(channel=channel.name, result="delivered").inc()
        sent[channel.name] = rfc3339(datetime.now(UTC))
        _SENT_HERE[lease_key] = (me, sent[channel.name])  # until the mark is stored
        _mark_sent(gateway, lease_key, me, sent[channel.name])
        _SENT_HERE.pop(lease_key, None)
    record = note.model_dump(mode="json") | {"delivered": sent}
    if skipped:
        record["skipped"] = skipped
    if gateway.state.claim(key, record):
        _append(gateway, f"notifications-by-order:{note.order_id}", record)
        return Answer.success()
    kept, _ = gateway.state.get(key)  # a delivery beside this one stored it first
    _append(gateway, f"notifications-by-order:{note.order_id}", kept or record)
    return Answer.success("already delivered")


def _take(gateway: Gateway, key: str, me: str) -> dict[str, Any]:
    """Take the channel's lease for this delivery: {} when `me` took it; otherwise what stopped
    it: {"sent_at"} when the channel was used already, or another holder's lease."""
    now = datetime.now(UTC)
    lease = {"holder": me, "until": rfc3339(now + SENDING_LEASE)}
    found: dict[str, Any] = {}

    def change(current: dict[str, Any] | None) -> dict[str, Any] | None:
        nonlocal found
        if current is not None and (
            current.get("sent_at") or datetime.fromisoformat(current["until"]) > now
        ):
            found = current
            return None
        found = {}  # free, or its holder died and the lease ran out
        return lease

    update(gateway.state, key, change)
    return found


# The lease was written as a first write, so it changes only through its etag (`update`): on
# Redis a plain put over a first-written key is refused ("failed to set key").
def _mark_sent(gateway: Gateway, key: str, me: str, at: str) -> None:
    update(
        gateway.state, key, lambda cur: {"sent_at": at} if (cur or {}).get("holder") == me else None
    )


def _release(gateway: Gateway, key: str, me: str) -> None:
    def change(current: dict[str, Any] | None) -> dict[str, Any] | None:
        mine = (current or {}).get("holder") == me
        return current | {"until": rfc3339(datetime.now(UTC))} if mine else None  # type: ignore[operator]

    try:
        update(gateway.state, key, change)
    except GatewayError:
        log.warning("could not give back %s; it frees itself in %s", key, SENDING_LEASE)


def _append(gateway: Gateway, key: str, item: dict[str, Any]) -> None:
    """Add `item` to the JSON list under `key`, once (several deliveries may race)."""

    def change(items: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if any(i.get("id") == item["id"] for i in items or []):
            return None
        return [*(items or []), item]

    update(gateway.state, key, change)


def register(app: FastAPI, dapr_app: DaprApp, settings: ServiceSettings) -> None:
    """Mount the subscriptions and routes on the app."""
    assert isinstance(settings, NotifierSettings)
    conf = settings

    def gw() -> Gateway:
        return app.state.gateway  # type: ignore[no-any-return]

    def send(note: Notification) -> Answer:
        return deliver(gw(), note, channels_for(app, conf, note))

    if "email" in conf.channels:  # approvers' links are signed with this app's key

        def load_link_signer(gateway: Gateway, _audit: object) -> None:
            assert gateway.secrets is not None
            app.state.link_signer = load_signer(gateway.secrets, conf)

        app.state.on_ready = [*getattr(app.state, "on_ready", []), load_link_signer]

    subscribe(
        dapr_app,
        gw,
        settings,
        topic=APPROVAL_REQUESTS,
        model=ApprovalRequested,
        handler=lambda m: send(for_approval_request(m, datetime.now(UTC))),
        signed_by=keys_of(app, "orders", "approvals"),
        limits=TRUSTED,  # checked by orders under the policy the order started with
    )
    subscribe(
        dapr_app,
        gw,
        settings,
        topic=APPROVAL_REMINDERS,
        model=ApprovalReminded,
        handler=lambda m: send(for_approval_request(m, datetime.now(UTC))),
        signed_by=keys_of(app, "approvals"),  # only the approval workflow reminds
        limits=TRUSTED,
    )
    subscribe(
        dapr_app,
        gw,
        settings,
        topic=ORDER_STATUS,
        model=OrderStatusChanged,
        handler=lambda m: send(for_status_change(m)),
        signed_by=keys_of(app, "orders"),  # customers hear only what orders says
    )
    app.include_router(router)


router = APIRouter(tags=["notifications"])


@router.get("/notifications")
def list_notifications(
    gateway: GatewayDep,
    _reader: Reader,
    order_id: Annotated[str, Query(min_length=1, max_length=55, pattern=r"^[A-Za-z0-9_-]+$")],
) -> list[dict[str, Any]]:
    """The notifications delivered for one order, oldest first (by `at`)."""
    items, _ = gateway.state.get(f"notifications-by-order:{order_id}")
    # Stored in delivery order, which topics do not keep; sorted as instants, not as strings.
    return sorted(items or [], key=lambda n: datetime.fromisoformat(n["at"]))
