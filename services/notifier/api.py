"""notifier: subscriptions (approval-requests, order-status) and the delivery log API."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from dapr.ext.fastapi import DaprApp
from fastapi import APIRouter, FastAPI, Query

from contracts.messages import TRUSTED, ApprovalRequested, OrderStatusChanged
from contracts.timestamps import rfc3339
from contracts.topics import APPROVAL_REQUESTS, ORDER_STATUS
from notifier.channels import Channel, LogChannel, WebhookChannel
from notifier.domain import Notification, for_approval_request, for_status_change
from notifier.settings import NotifierSettings
from plumbing.auth import Reader
from plumbing.gateway import Gateway, GatewayError
from plumbing.settings import ServiceSettings
from plumbing.state import update
from plumbing.subscriptions import Answer, keys_of, subscribe
from plumbing.web import GatewayDep

log = logging.getLogger(__name__)


def channels_for(gateway: Gateway, settings: NotifierSettings) -> list[Channel]:
    """The channels the settings name, bound to this app's sidecar."""
    chosen: list[Channel] = []
    for name in settings.channels:
        if name == "log":
            chosen.append(LogChannel())
        elif name == "webhook" and gateway.bindings is not None:
            chosen.append(WebhookChannel(gateway.bindings, settings.webhook_binding))
    return chosen


def deliver(gateway: Gateway, settings: NotifierSettings, note: Notification) -> Answer:
    """Deliver a notification once per message id, and add it to the order's delivery log.

    A redelivered message finds the delivery record and stops. Delivery happens before the
    record is written, so a failed channel means RETRY and nothing is recorded as sent.
    """
    key = f"notification:{note.id}"
    done, _ = gateway.state.get(key)
    if done:
        return Answer.success("already delivered")
    sent: dict[str, str] = {}
    for channel in channels_for(gateway, settings):
        try:
            channel.send(note)
        except GatewayError as exc:
            return Answer.retry(f"{channel.name} delivery failed: {exc}")
        sent[channel.name] = rfc3339(datetime.now(UTC))
    record = note.model_dump(mode="json") | {"delivered": sent}
    if not gateway.state.claim(key, record):
        return Answer.success("already delivered")
    _append(gateway, f"notifications-by-order:{note.order_id}", record)
    return Answer.success()


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

    subscribe(
        dapr_app,
        gw,
        settings,
        topic=APPROVAL_REQUESTS,
        model=ApprovalRequested,
        handler=lambda m: deliver(gw(), conf, for_approval_request(m, datetime.now(UTC))),
        signed_by=keys_of(app, "orders", "approvals"),
        limits=TRUSTED,  # checked by orders under the policy the order started with
    )
    subscribe(
        dapr_app,
        gw,
        settings,
        topic=ORDER_STATUS,
        model=OrderStatusChanged,
        handler=lambda m: deliver(gw(), conf, for_status_change(m)),
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
