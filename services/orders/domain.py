"""Order rules apart from transport: what an order id stands for. Pure: no FastAPI, no Dapr.

Errors (mapped to HTTP once in orders.app):
  ConflictingOrder (409)  an order id placed again with other content
  NotCancellable (409)    an order that cannot take a cancellation (finished, approved, ...)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.messages import OrderPlaced


class ConflictingOrder(Exception):
    """The order id was placed already, with other content."""


class NotCancellable(Exception):
    """The order cannot be cancelled now; the message says why and what to do instead."""


# Where an order's workflow can still take the cancel event (and, suspended, once resumed).
CANCELLABLE_WORKFLOW = frozenset({"RUNNING", "SUSPENDED"})
STUCK_HINT = "terminate its workflow instead (POST /workflows/{iid}/terminate)"


def why_not_cancel(
    order_id: str, status: str, workflow_status: str | None, takes_cancel: bool
) -> str | None:
    """Why the order cannot be cancelled now, or None when it can.

    `status` is the order record's, `workflow_status` its workflow's (None once purged), and
    `takes_cancel` whether that workflow waits for the cancel event at all (orders that were
    already waiting when cancellation was added do not)."""
    iid = f"order-{order_id}"
    if status in ("completed", "rejected", "expired", "failed", "cancelled", "terminated"):
        return f"order {order_id} is {status}: a finished order cannot be cancelled"
    if status == "approved":
        return (
            f"order {order_id} was approved and is being fulfilled: it can no longer be cancelled"
        )
    if workflow_status in (None, "PENDING"):
        return (
            f"order {order_id} has not started yet (its workflow is not running); try again shortly"
        )
    if workflow_status == "STALLED":
        return (
            f"order {order_id}'s workflow is STALLED: it cannot take a cancellation now. An "
            "older replica replayed it during a rollout; it goes on once a newer one takes it: "
            "wait for the rollout to finish and cancel again; if it stays STALLED, "
            + STUCK_HINT.format(iid=iid)
        )
    if workflow_status not in CANCELLABLE_WORKFLOW:
        return (
            f"order {order_id}'s workflow is {workflow_status}: it cannot take a cancellation; "
            + STUCK_HINT.format(iid=iid)
        )
    if not takes_cancel:
        return (
            f"order {order_id} started before orders could be cancelled and its workflow does "
            "not wait for a cancellation; " + STUCK_HINT.format(iid=iid)
        )
    return None


def content_of(order: OrderPlaced) -> dict[str, Any]:
    """What an order id stands for. `placed_at` is not part of it: a POST retried without one
    gets a new default, and is still the same order."""
    return {
        "customer_id": order.customer_id,
        "amount": str(order.amount),
        "currency": order.currency,
        "items": sorted([item.sku, item.quantity] for item in order.items),
    }


def differences(first: Mapping[str, Any], again: Mapping[str, Any]) -> list[str]:
    """How `again` differs from `first`, field by field: ["amount 3000.00, was 2500.00"]."""
    found = []
    for field in ("customer_id", "amount", "currency"):
        if first.get(field) != again.get(field):
            found.append(f"{field} {again.get(field)}, was {first.get(field)}")
    if [list(i) for i in first.get("items", [])] != [list(i) for i in again.get("items", [])]:
        found.append(
            f"items {_items(again.get('items', []))}, were {_items(first.get('items', []))}"
        )
    return found


def _items(items: list[Any]) -> str:
    return "[" + ", ".join(f"{sku} x{qty}" for sku, qty in items) + "]" if items else "none"


def conflict(order_id: str, differ: list[str]) -> ConflictingOrder:
    """The error for a conflicting duplicate, saying what differs."""
    return ConflictingOrder(
        f"order {order_id} was placed already with other content ({'; '.join(differ)}); "
        "an identical order is accepted again, a different one needs a new order_id"
    )
