"""Order rules apart from transport: what an order id stands for. Pure: no FastAPI, no Dapr.

Errors (mapped to HTTP once in orders.app):
  ConflictingOrder (409)  an order id placed again with other content
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.messages import OrderPlaced


class ConflictingOrder(Exception):
    """The order id was placed already, with other content."""


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
