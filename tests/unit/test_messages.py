import json
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from cloudevents.core.formats.json import JSONFormat
from pydantic import ValidationError

from contracts.envelope import (
    MAX_DEPTH,
    BadEnvelope,
    BadPayload,
    TooDeep,
    envelope,
    load_json,
    nesting_depth,
    unwrap,
    wrap,
)
from contracts.messages import (
    TRUSTED,
    ApprovalRequested,
    DecisionSubmitted,
    MessageLimits,
    OrderPlaced,
    OrderStatusChanged,
    Tier,
    describe_errors,
)
from contracts.money import Rate, Valuation

RATE_BHD = Rate(rate="2.28", as_of="2026-11-20")

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def order(**over: object) -> dict[str, object]:
    return {
        "order_id": "o-1",
        "customer_id": "c-1",
        "amount": "120.00",
        "currency": "EUR",
        "placed_at": "2026-01-05T09:00:00Z",
        **over,
    }


def problem(data: dict[str, object], limits: MessageLimits | None = None) -> str:
    with pytest.raises(ValidationError) as err:
        OrderPlaced.model_validate(data, context=limits or MessageLimits())
    return describe_errors(err.value)


@pytest.mark.parametrize(
    ("amount", "says"),
    [
        ("-1", "greater than 0"),
        ("1E+40", "must be below 10^18"),
        ("0", "greater than 0"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("1.234", "2 decimal places"),
        ("10000000.01", "must not exceed"),
        ("abc", "valid decimal"),
    ],
)
def test_bad_amounts_get_a_clear_message(amount: str, says: str) -> None:
    text = problem(order(amount=amount))
    assert text.startswith("amount:") and says in text


def test_money_is_decimal_never_float() -> None:
    msg = OrderPlaced.model_validate(order(amount=0.1))
    assert msg.amount == Decimal("0.1")
    assert "2 decimal places" in problem(order(amount=0.1 + 0.2))


def test_unknown_currency_lists_the_accepted_ones() -> None:
    assert problem(order(currency="XYZ")) == (
        "currency: 'XYZ' is not an ISO 4217 currency code; use one of CHF, EUR, GBP, JPY, USD"
    )
    assert problem(order(currency="SEK")) == (
        "currency: 'SEK' is not accepted: the approval policy has no exchange rate from it to "
        "EUR, so it could not compare the amount with its thresholds; "
        "use one of CHF, EUR, GBP, JPY, USD"
    )
    assert problem(order(currency="EUR"), MessageLimits(currencies=frozenset({"USD"})))


@pytest.mark.parametrize(
    ("amount", "currency", "dumped"),
    [("2500", "EUR", "2500.00"), ("9000", "JPY", "9000"), ("9000.00", "JPY", "9000")],
)
def test_amounts_are_kept_in_their_currency_s_minor_units(
    amount: str, currency: str, dumped: str
) -> None:
    msg = OrderPlaced.model_validate(order(amount=amount, currency=currency))
    assert msg.model_dump(mode="json")["amount"] == dumped


def test_jpy_has_no_minor_units_and_bhd_has_three() -> None:
    assert problem(order(amount="9000.5", currency="JPY")) == (
        "amount: JPY has no minor units: use a whole number (got 9000.5)"
    )
    bhd = MessageLimits(currencies=frozenset({"EUR", "BHD"}), rates={"BHD": RATE_BHD})
    msg = OrderPlaced.model_validate(order(amount="12.345", currency="BHD"), context=bhd)
    assert str(msg.amount) == "12.345"
    assert problem(order(amount="12.3456", currency="BHD"), bhd) == (
        "amount: BHD has 3 decimal places; got 12.3456"
    )


def test_policy_minor_units_override_babel() -> None:
    limits = MessageLimits(
        currencies=frozenset({"IQD"}), rates={"IQD": RATE_BHD}, minor_units={"IQD": 3}
    )
    msg = OrderPlaced.model_validate(order(amount="5", currency="IQD"), context=limits)
    assert str(msg.amount) == "5.000"


def test_the_largest_amount_is_in_the_base_currency() -> None:
    jpy = OrderPlaced.model_validate(order(amount="20000000", currency="JPY"))  # 110,000 EUR
    assert jpy.amount == Decimal(20_000_000)
    assert problem(order(amount="9000000", currency="GBP")) == (
        "amount: must not exceed 10000000.00 EUR "
        "(this is 10260000.00 EUR; 1 GBP = 1.14 EUR as of 2026-11-20)"
    )


def test_trusted_messages_are_read_as_they_are() -> None:
    msg = OrderPlaced.model_validate(order(amount="9000.5", currency="JPY"), context=TRUSTED)
    assert msg.amount == Decimal("9000.5")


@pytest.mark.parametrize("bad", ["", "a b", "x" * 56, "ü", "o/1", "o.1", "rev-1\n", "a||b"])
def test_ids_fit_dapr_instance_ids(bad: str) -> None:
    assert "order_id: must be 1-55 characters" in problem(order(order_id=bad))


def test_naive_timestamps_are_refused() -> None:
    assert "placed_at: Input should have timezone info" in problem(
        order(placed_at="2026-01-05T09:00:00")
    )


def test_unknown_fields_are_refused() -> None:
    assert "extra" in problem(order(colour="red")).lower()


def test_cloudevent_round_trip_uses_business_id() -> None:
    msg = OrderPlaced.model_validate(order())
    body = wrap(msg, "shop")
    envelope = json.loads(body)
    assert envelope["id"] == "o-1" and envelope["specversion"] == "1.0"
    assert envelope["type"] == "order-approvals.OrderPlaced.v1"
    assert unwrap(body, OrderPlaced) == ("o-1", msg)


def test_stable_ids_for_every_message() -> None:
    status = OrderStatusChanged(order_id="o-1", status="approved", at=NOW)
    assert status.message_id == "o-1-approved"
    req = ApprovalRequested(
        request_id=ApprovalRequested.make_id("o-1", 2, Tier.VP),
        order_id="o-1",
        customer_id="c",
        amount="9000",
        currency="EUR",
        tier="vp",
        stage=2,
        due_at=NOW,
    )
    assert req.message_id == "o-1-s2-vp" and str(req.amount) == "9000.00"
    dec = DecisionSubmitted(
        decision_id="d-1",
        order_id="o-1",
        approved=True,
        approver_id="m",
        approver_role="manager",
        decided_at=NOW,
    )
    assert dec.message_id == "d-1"


@pytest.mark.parametrize(
    ("body", "error", "says"),
    [
        (b"not json", BadEnvelope, "not JSON"),
        (b"[1]", BadEnvelope, "JSON object"),
        (b'{"id": "x"}', BadEnvelope, "CloudEvents"),
        (
            b'{"specversion": "1.0", "id": "x", "source": "s", "type": "t", "data": "oops"}',
            BadPayload,
            "data is not JSON",
        ),
        (
            b'{"specversion": "1.0", "id": "x", "source": "s", "type": "t",'
            b' "data": {"order_id": 1}}',
            BadPayload,
            "OrderPlaced is invalid",
        ),
    ],
)
def test_unwrap_refuses_what_can_never_succeed(body: bytes, error: type, says: str) -> None:
    with pytest.raises(error, match=says):
        unwrap(body, OrderPlaced)


HEAD = '"id": "e-1", "source": "s", "type": "t"'


@pytest.mark.parametrize(
    "rest",
    [
        ', "specversion": "1.0", "time": "2026-11-23T22:18:25.456853Z", "data": {"a": 1}',
        ', "specversion": "1.0", "time": "2026-11-23T22:18:25+01:00", "data": "text"',
        ', "specversion": "1.0", "time": "2026-11-23T22:18:25.123456789Z"',
        ', "specversion": "1.0", "time": "2026-11-23"',
        ', "specversion": "1.0", "time": "2026-02-30T10:00:00Z"',
        ', "specversion": "1.0", "time": "2026-11-23T24:00:00Z"',
        ', "specversion": "1.0", "time": null',
        ', "specversion": "1.0", "time": 5',
        ', "specversion": "1.0", "data_base64": "aGk="',
        ', "specversion": "1.0", "data": null, "data_base64": "aGk="',
        ', "specversion": "1.0", "traceparent": "00-ab-cd-01", "signature": "x"',
        ', "specversion": "1.0", "Bad_Name": 1',
        ', "time": "2026-11-23T22:18:25Z"',
        ', "specversion": "0.3", "datacontentencoding": "base64", "data": "aGk="',
        ', "specversion": "2.0"',
    ],
)
def test_the_envelope_reads_what_the_cloudevents_library_reads(rest: str) -> None:
    # envelope() builds the usual event from the body it parsed once; the rest goes to the
    # library: either way, the same attributes and data, or a refusal where it refuses.
    body = f"{{{HEAD}{rest}}}".encode()
    try:
        event = JSONFormat().read(None, body)
    except Exception:
        with pytest.raises(BadEnvelope, match=r"not a CloudEvents 1\.0 envelope:"):
            envelope(body)
        return
    got, read = envelope(body), {**event.get_attributes(), "data": event.get_data()}
    if '"time"' not in rest:  # each reading stamps an event without a time with its own now
        del got["time"], read["time"]
    assert got == read


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_nesting_depth_counts_brackets_outside_strings_only() -> None:
    assert nesting_depth('{"a": [1, {"b": "[[[{{{"}], "c": "\\"[["}') == 3
    assert nesting_depth(nested(MAX_DEPTH)) == MAX_DEPTH
    assert nesting_depth('"unterminated [[[[') == 0
    assert load_json(nested(MAX_DEPTH)) is not None
    assert load_json(json.dumps({"a": "[" * 100})) == {"a": "[" * 100}  # brackets in a string


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100, 100_000])
def test_json_nested_too_deep_is_refused_before_parsing(depth: int) -> None:
    # Depth 33 parses fine with json.loads: the bound is ours, not the interpreter's.
    with pytest.raises(TooDeep, match=f"nested deeper than {MAX_DEPTH} levels"):
        load_json(nested(depth))


def event_with_data(data: str) -> bytes:
    head = '{"specversion": "1.0", "id": "deep-1", "source": "s", "type": "t", "data": '
    return f"{head}{data}}}".encode()


def test_unwrap_refuses_a_deeply_nested_envelope_or_data() -> None:
    with pytest.raises(BadEnvelope, match="body refused: JSON nested deeper than 32 levels"):
        unwrap(event_with_data(nested(50_000)), OrderPlaced)
    # The same nesting sent as a JSON string in `data` is parsed by unwrap: bounded there too.
    with pytest.raises(BadPayload, match="data refused: JSON nested deeper than 32") as err:
        unwrap(event_with_data(json.dumps(nested(50_000))), OrderPlaced)
    assert err.value.event_id == "deep-1"


def test_an_approval_request_carries_the_rate_that_decided_its_tier() -> None:
    worth = Valuation(
        base_currency="EUR", base_amount="1100.00", rate="0.0055", rate_as_of="2026-11-20"
    )
    req = ApprovalRequested(
        request_id="o-1-s1-manager",
        order_id="o-1",
        customer_id="c",
        amount="200000",
        currency="JPY",
        tier="manager",
        stage=1,
        due_at=NOW,
        valuation=worth,
    )
    _, back = unwrap(wrap(req, "test"), ApprovalRequested)
    assert back == req and back.valuation == worth
    assert json.loads(wrap(req, "test"))["data"]["valuation"] == {
        "base_currency": "EUR",
        "base_amount": "1100.00",
        "rate": "0.0055",
        "rate_as_of": "2026-11-20",
    }


def test_a_rated_currency_the_policy_leaves_out_is_refused_without_blaming_the_rate() -> None:
    narrowed = MessageLimits(currencies=frozenset({"EUR"}))
    assert problem(order(currency="JPY", amount="9000"), narrowed) == (
        "currency: 'JPY' is not accepted; use one of EUR"
    )


CONTROLS = {
    "\x00": "U+0000 (NUL)",
    "\x07": "U+0007 (BEL)",
    "\n": "U+000A (line feed)",
    "\u202e": "U+202E (right-to-left override)",
    "\u2066": "U+2066 (left-to-right isolate)",
    "\x9b": "U+009B (control character)",
}


@pytest.mark.parametrize(("char", "named"), sorted(CONTROLS.items()))
def test_free_text_refuses_control_characters_and_bidi_overrides(char: str, named: str) -> None:
    decision = {
        "decision_id": "d-1",
        "order_id": "o-1",
        "approved": False,
        "approver_id": "bob",
        "approver_role": "manager",
        "decided_at": NOW,
    }
    entering = MessageLimits()  # what a subscription or an order placed over HTTP checks with
    for field, text in (("reason", f"abc{char}"), ("approver_id", f"bob{char}")):
        with pytest.raises(ValidationError) as err:
            DecisionSubmitted.model_validate({**decision, field: text}, context=entering)
        said = describe_errors(err.value)
        assert said.startswith(f"{field}: must be plain text without control characters")
        assert f"found {named} at character 4" in said
    with pytest.raises(ValidationError, match=re.escape(named)):
        OrderPlaced.model_validate(
            order(items=[{"sku": f"sku{char}", "quantity": 1}]), context=entering
        )
    status = {"order_id": "o-1", "status": "rejected", "at": NOW, "detail": f"x{char}"}
    with pytest.raises(ValidationError):
        OrderStatusChanged.model_validate(status, context=entering)


def test_free_text_keeps_every_language_and_the_bidi_marks() -> None:
    text = (
        "Gr\u00fc\u00dfe, \U0001f44d \u05e9\u05dc\u05d5\u05dd\u200f \u0645\u0631\u062d\u0628\u0627"
    )
    status = {"order_id": "o-1", "status": "rejected", "at": NOW, "detail": text}
    st = OrderStatusChanged.model_validate(status, context=MessageLimits())
    assert st.detail == text


def test_text_stored_before_the_check_still_replays() -> None:
    """Only text that enters is checked: what a workflow reads back or builds from it (an
    order, a decision from before the check) is taken as it is, so replay does not change."""
    old = order(customer_id="c\u202e1", items=[{"sku": "a\nb", "quantity": 1}])
    assert OrderPlaced.model_validate(old, context=TRUSTED).customer_id == "c\u202e1"
    snapshot = MessageLimits(from_snapshot=True)
    assert OrderPlaced.model_validate(old, context=snapshot).items[0].sku == "a\nb"
    built = OrderStatusChanged(order_id="o-1", status="rejected", at=NOW, detail="no\nway")
    assert built.detail == "no\nway"
