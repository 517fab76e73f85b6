"""Topic names, in one place; DESIGN.md's "Apps" table says who publishes and subscribes."""

ORDERS = "orders"
APPROVAL_REQUESTS = "approval-requests"
DECISIONS = "decisions"
APPROVAL_OUTCOMES = "approval-outcomes"
ORDER_STATUS = "order-status"


def dead_letter(topic: str) -> str:
    """Where a subscriber's sidecar sends what the app answered DROP (or gave up retrying)."""
    return f"{topic}-deadletter"
