"""Topic names, in one place; DESIGN.md's "Apps" table says who publishes and subscribes."""

ORDERS = "orders"
APPROVAL_REQUESTS = "approval-requests"
DECISIONS = "decisions"
APPROVAL_OUTCOMES = "approval-outcomes"
ORDER_STATUS = "order-status"
APPROVAL_REMINDERS = "approval-reminders"
APPROVAL_CANCELLATIONS = "approval-cancellations"


def dead_letter(topic: str, app_id: str) -> str:
    """Where `app_id`'s sidecar sends what it answered DROP on `topic` (or gave up retrying).

    One per app and topic: two apps subscribed to one topic do not see each other's rejects.
    """
    return f"deadletter-{app_id}-{topic}"
