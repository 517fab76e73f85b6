"""notifier: subscriptions (approval-requests, order-status) and the delivery log API."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from dapr.ext.fastapi import DaprApp
from fastapi import APIRouter, Depends, FastAPI, Query, Request

from common.gateway import Gateway
from common.messages import ApprovalRequested, OrderStatusChanged
from common.settings import ServiceSettings
from common.state import update
from common.subscriptions import Answer, subscribe
from common.topics import APPROVAL_REQUESTS, ORDER_STATUS
from notifier.domain import Notification, for_approval_request, for_status_change

log = logging.getLogger(__name__)


def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def deliver(gateway: Gateway, note: Notification) -> Answer:
    """Deliver a notification once per message id, and add it to the order's delivery log."""
    record = note.model_dump(mode="json") | {"channel": "log"}
    if not gateway.state.claim(f"notification:{note.id}", record):
        return Answer.success("already delivered")
    log.info("NOTIFY %s | %s | %s", note.audience, note.subject, note.text)
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

    def gw() -> Gateway:
        return app.state.gateway  # type: ignore[no-any-return]

    subscribe(dapr_app, gw, settings, topic=APPROVAL_REQUESTS, model=ApprovalRequested,
              handler=lambda m: deliver(gw(), for_approval_request(m)))
    subscribe(dapr_app, gw, settings, topic=ORDER_STATUS, model=OrderStatusChanged,
              handler=lambda m: deliver(gw(), for_status_change(m)))
    app.include_router(router)


router = APIRouter(tags=["notifications"])


@router.get("/notifications")
def list_notifications(
    gateway: GatewayDep,
    order_id: Annotated[str, Query(min_length=1, max_length=55, pattern=r"^[A-Za-z0-9_-]+$")],
) -> list[dict[str, Any]]:
    """The notifications delivered for one order, oldest first."""
    items, _ = gateway.state.get(f"notifications-by-order:{order_id}")
    return list(items or [])
