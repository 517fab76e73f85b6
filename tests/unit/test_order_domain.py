"""What an order id stands for, and how a conflicting duplicate is told apart and explained."""

from datetime import UTC, datetime

from contracts.messages import OrderPlaced
from orders.domain import conflict, content_of, differences

PLACED = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def order(amount: str = "10", currency: str = "EUR", **over) -> OrderPlaced:
    fields = {"order_id": "o-1", "customer_id": "c-1", "placed_at": PLACED} | over
    return OrderPlaced(amount=amount, currency=currency, **fields)


def test_a_retry_with_another_placed_at_is_the_same_order() -> None:
    first = content_of(order(items=[{"sku": "b", "quantity": 2}, {"sku": "a", "quantity": 1}]))
    again = content_of(
        order(
            "10.00",
            items=[{"sku": "a", "quantity": 1}, {"sku": "b", "quantity": 2}],
            placed_at=datetime(2026, 11, 24, tzinfo=UTC),
        )
    )
    assert differences(first, again) == []


def test_a_conflict_names_every_difference_and_every_item() -> None:
    first = content_of(order(items=[{"sku": "a", "quantity": 1}]))
    again = content_of(
        order("20", "USD", items=[{"sku": "b", "quantity": 2}, {"sku": "a", "quantity": 1}])
    )
    assert str(conflict("o-1", differences(first, again))) == (
        "order o-1 was placed already with other content (amount 20.00, was 10.00; "
        "currency USD, was EUR; items [a x1, b x2], were [a x1]); an identical order is "
        "accepted again, a different one needs a new order_id"
    )
