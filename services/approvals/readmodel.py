"""The approver inbox read model in the state store, kept by the workflow's activities.

One document per approval ("approval:<order_id>") plus one small index of every approval's
status and tier, so the inbox never scans workflows. The index is updated under optimistic
concurrency; at this project's scale one document is enough (see docs/architecture.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from approvals.domain import ApprovalView, price_text
from contracts.money import Valuation
from contracts.timestamps import rfc3339
from plumbing.gateway import StateStore
from plumbing.state import update

INDEX_KEY = "approvals-index"


def view_key(order_id: str) -> str:
    return f"approval:{order_id}"


def save_view(state: StateStore, view: ApprovalView) -> None:
    """Write the approval's document, then its line in the index."""
    state.put(view_key(view.order_id), view.model_dump(mode="json"))
    line = {
        "status": view.status,
        "tier": view.tier.value,
        "due_at": rfc3339(view.due_at),
        "customer_id": view.customer_id,
        "amount": view.amount,
        "currency": view.currency,
        "valuation": view.valuation.model_dump(mode="json") if view.valuation else None,
    }

    def change(index: dict[str, Any] | None) -> dict[str, Any] | None:
        if index is not None and index.get(view.order_id) == line:
            return None
        return {**(index or {}), view.order_id: line}

    update(state, INDEX_KEY, change)


def load_view(state: StateStore, order_id: str) -> ApprovalView | None:
    data, _ = state.get(view_key(order_id))
    return ApprovalView.model_validate(data) if data else None


def list_index(state: StateStore, status: str | None, tier: str | None) -> list[dict[str, Any]]:
    """Index lines matching the filters, soonest due first, each with its amount_text."""
    index, _ = state.get(INDEX_KEY)
    rows = [
        # Lines written before times were all RFC 3339 with `Z` read like the new ones.
        {
            "order_id": oid,
            **line,
            "due_at": rfc3339(datetime.fromisoformat(line["due_at"])),
            "amount_text": _amount_text(line),
        }
        for oid, line in (index or {}).items()
        if (status is None or line["status"] == status) and (tier is None or line["tier"] == tier)
    ]
    for row in rows:
        if "customer_id" not in row:  # a line written before the index kept the customer
            view = load_view(state, row["order_id"])
            row["customer_id"] = view.customer_id if view else ""
    return sorted(rows, key=lambda r: datetime.fromisoformat(r["due_at"]))


def _amount_text(line: dict[str, Any]) -> str:
    valuation = line.get("valuation")
    return price_text(
        line["amount"], line["currency"], Valuation.model_validate(valuation) if valuation else None
    )
