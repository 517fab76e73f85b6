import base64
import json
import logging
import secrets
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from contracts.messages import ApprovalOutcome, OrderPlaced
from contracts.policy import load_policy
from orders.app import create_app
from plumbing.auth import AuthConfigError
from plumbing.gateway import Transient
from plumbing.settings import ServiceSettings
from tests.fakes import LOCAL, bearer, production_keys
from tests.service.conftest import AppFactory, deliver

NOW = datetime(2026, 1, 5, 9, tzinfo=UTC)
ORDER = OrderPlaced(
    order_id="o-1", customer_id="c-1", amount="120.00", currency="EUR", placed_at=NOW
)


@pytest.fixture
def orders(client: AppFactory) -> TestClient:
    return client(create_app, ServiceSettings(app_id="orders"))


def test_order_message_schedules_one_workflow_with_the_policy(orders: TestClient, gateway) -> None:
    assert deliver(orders, "orders", ORDER)["status"] == "SUCCESS"
    ((name, iid, inp),) = gateway.workflows.scheduled
    assert (name, iid) == ("order_workflow", "order-o-1")
    assert inp["order"]["amount"] == "120.00" and inp["policy"]["manager_limit"] == "5000"


def test_redelivered_order_is_a_harmless_duplicate_even_after_it_finished(
    orders: TestClient, gateway
) -> None:
    deliver(orders, "orders", ORDER)
    gateway.workflows.add("order-o-1", "COMPLETED")
    answer = deliver(orders, "orders", ORDER)
    assert answer == {"status": "SUCCESS", "reason": "duplicate order"}
    assert len(gateway.workflows.scheduled) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not JSON"),
        (
            b'{"specversion": "1.0", "id": "x", "source": "s", "type": "t",'
            b' "data": {"order_id": "o-2", "amount": "-3"}}',
            "OrderPlaced is invalid",
        ),
    ],
)
def test_what_can_never_succeed_is_dropped_with_a_reason(
    orders: TestClient, gateway, body: bytes, reason: str
) -> None:
    answer = deliver(orders, "orders", body)
    assert answer["status"] == "DROP" and reason in answer["reason"]
    assert not gateway.workflows.scheduled


def test_deeply_nested_cloudevent_is_dropped_and_dead_lettered_not_a_500(
    orders: TestClient, gateway
) -> None:
    deep = (
        b'{"specversion": "1.0", "id": "deep-1", "source": "s", "type": "t", "data": '
        + b"[" * 20_000
        + b"]" * 20_000
        + b"}"
    )
    answer = deliver(orders, "orders", deep)
    assert answer == {"status": "DROP", "reason": "body refused: JSON nested deeper than 32 levels"}
    assert not gateway.workflows.scheduled
    # The sidecar hands it back on the dead-letter topic; the collector keeps it, by its id.
    assert orders.post("/deadletters/orders", content=deep).json()["status"] == "SUCCESS"
    (kept,) = orders.get("/deadletters").json()
    assert kept["event_id"] == "?" and "nested deeper" in kept["reason"]


def test_order_id_with_a_trailing_newline_is_dropped_not_retried(
    orders: TestClient, gateway
) -> None:
    data = ORDER.model_dump(mode="json") | {"order_id": "rev-1\n"}
    body = json.dumps(
        {"specversion": "1.0", "id": "rev-1", "source": "s", "type": "t", "data": data}
    )
    answer = deliver(orders, "orders", body.encode())
    assert answer["status"] == "DROP" and "order_id: must be 1-55 characters" in answer["reason"]
    assert not gateway.workflows.scheduled


def test_transient_sidecar_trouble_asks_for_a_retry(orders: TestClient, gateway) -> None:
    def down(*_: object) -> bool:
        raise Transient("state store not ready")

    gateway.state.claim = down
    assert deliver(orders, "orders", ORDER) == {
        "status": "RETRY",
        "reason": "state store not ready",
    }


def test_an_unexpected_error_asks_for_a_retry_and_logs_its_trace(
    orders: TestClient, gateway, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> bool:
        raise RuntimeError("a bug")

    gateway.state.claim = broken
    assert deliver(orders, "orders", ORDER) == {"status": "RETRY", "reason": "unexpected error"}
    (failed,) = [r for r in caplog.records if r.exc_info]
    assert failed.getMessage() == (
        f"topic orders: handler failed on event {ORDER.message_id}; asking for a retry"
    )
    assert failed.exc_info[1].args == ("a bug",)


def test_each_answer_is_logged_a_drop_or_retry_as_a_warning(
    orders: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="plumbing.subscriptions")
    deliver(orders, "orders", ORDER)
    dropped = deliver(orders, "orders", b'{"id": "ev-9", "data": {}}')
    answers = [(r.levelname, r.getMessage()) for r in caplog.records if " -> " in r.getMessage()]
    assert answers == [
        ("INFO", f"topic orders event {ORDER.message_id} -> SUCCESS"),
        ("WARNING", f"topic orders event ev-9 -> DROP ({dropped['reason']})"),
    ]


def test_approval_outcome_is_raised_into_the_running_order(orders: TestClient, gateway) -> None:
    outcome = ApprovalOutcome(order_id="o-1", outcome="approved", decided_by="m", decided_at=NOW)
    assert deliver(orders, "approval-outcomes", outcome)["status"] == "DROP"  # no such order
    gateway.workflows.add("order-o-1")
    assert deliver(orders, "approval-outcomes", outcome)["status"] == "SUCCESS"
    ((iid, event, data),) = gateway.workflows.raised
    assert (iid, event, data["outcome"]) == ("order-o-1", "approval_outcome", "approved")
    gateway.workflows.add("order-o-1", "COMPLETED")
    assert "already completed" in deliver(orders, "approval-outcomes", outcome)["reason"]
    assert len(gateway.workflows.raised) == 1


def test_oversized_body_is_refused_early_and_audited(client: AppFactory) -> None:
    small = client(create_app, ServiceSettings(app_id="orders", max_body_bytes=100))
    resp = small.post("/events/orders", content=b"x" * 101)
    assert resp.status_code == 413 and "larger than 100 bytes" in resp.json()["detail"]
    assert small.post("/orders", content=b"x" * 101).status_code == 413
    outcomes = [(e["action"], e["outcome"]) for e in small.get("/audit").json()]
    assert outcomes == [
        ("POST /events/orders", "refused 413: body larger than 100 bytes"),
        ("POST /orders", "refused 413: body larger than 100 bytes"),
    ]


def test_oversized_chunked_body_gets_the_same_413_audited(client: AppFactory, gateway) -> None:
    small = client(create_app, ServiceSettings(app_id="orders", max_body_bytes=100))

    def chunks():  # no Content-Length: Transfer-Encoding: chunked
        yield b'{"order_id": "o-1", "customer_id": "c", '
        yield b'"amount": "10", "currency": "EUR", "items": [' + b" " * 80 + b"]}"

    for path in ("/orders", "/events/orders"):
        resp = small.post(path, content=chunks(), headers={"content-type": "application/json"})
        assert resp.status_code == 413 and "larger than 100 bytes" in resp.json()["detail"]
    outcomes = [(e["action"], e["outcome"]) for e in small.get("/audit").json()]
    assert outcomes == [
        ("POST /orders", "refused 413: body larger than 100 bytes"),
        ("POST /events/orders", "refused 413: body larger than 100 bytes"),
    ]
    assert not gateway.publisher.published and not gateway.workflows.scheduled
    within = small.post(
        "/orders",
        content=iter([b'{"order_id": "o-1"', b"}"]),
        headers={"content-type": "application/json"},
    )
    assert within.status_code == 422 and "customer_id: Field required" in within.json()["detail"]


def test_each_subscription_has_a_dead_letter_topic_of_its_own_read_raw(orders: TestClient) -> None:
    declared = orders.get("/dapr/subscribe").json()
    assert declared[:2] == [
        {
            "pubsubname": "pubsub",
            "topic": "orders",
            "route": "/events/orders",
            "metadata": {},
            "deadLetterTopic": "deadletter-orders-orders",
        },
        {
            "pubsubname": "pubsub",
            "topic": "deadletter-orders-orders",
            "route": "/deadletters/orders",
            "metadata": {"rawPayload": "true"},
        },
    ]
    sources = ("orders", "approval-outcomes", "approval-requests")
    dead = {f"deadletter-orders-{t}" for t in sources}
    assert {d["topic"] for d in declared} == {*sources, *dead}


def test_app_token_guards_the_subscription_routes(client: AppFactory, gateway) -> None:
    guarded = client(create_app, ServiceSettings(app_id="orders", app_api_token="s3cret"))
    assert deliver(guarded, "orders", ORDER)["detail"] == "missing or wrong dapr-api-token"
    assert deliver(guarded, "orders", ORDER, {"dapr-api-token": "wrong"})["detail"]
    assert deliver(guarded, "orders", ORDER, {"dapr-api-token": "s3cret"})["status"] == "SUCCESS"


def test_place_order_publishes_and_bad_input_gets_a_message(orders: TestClient, gateway) -> None:
    resp = orders.post(
        "/orders",
        json={"order_id": "o-9", "customer_id": "c", "amount": "10.00", "currency": "EUR"},
    )
    assert resp.status_code == 202 and resp.json()["instance_id"] == "order-o-9"
    assert [m.message_id for m in gateway.publisher.to("orders")] == ["o-9"]
    bad = orders.post(
        "/orders",
        json={"order_id": "o 9", "customer_id": "c", "amount": "1.001", "currency": "EUR"},
    )
    assert bad.status_code == 422
    assert "amount:" in bad.json()["detail"] and "order_id:" in bad.json()["detail"]
    assert orders.post("/orders", content=b"[").status_code == 422


def test_unknown_order_is_404_not_500(orders: TestClient) -> None:
    resp = orders.get("/orders/nope")
    assert resp.status_code == 404 and resp.json() == {"detail": "no order 'nope'"}


@pytest.mark.parametrize("bad", ["rev-1%0A", "a%7C%7Cb", "o.1", "x" * 56])
def test_bad_order_id_in_the_path_is_422_before_the_sidecar(orders: TestClient, bad: str) -> None:
    resp = orders.get(f"/orders/{bad}")
    assert resp.status_code == 422
    assert resp.json()["detail"].startswith("path.order_id: must be 1-55 characters of A-Z")


def test_dropped_message_comes_back_with_its_reason(orders: TestClient) -> None:
    body = (
        b'{"specversion": "1.0", "id": "bad-1", "source": "s", "type": "t",'
        b' "data": {"order_id": "o-3", "amount": "1.001", "currency": "EUR"}}'
    )
    assert deliver(orders, "orders", body)["status"] == "DROP"
    assert orders.post("/deadletters/orders", content=body).json()["status"] == "SUCCESS"
    assert orders.post("/deadletters/orders", content=body).json()["status"] == "SUCCESS"
    (kept,) = orders.get("/deadletters").json()
    assert kept["event_id"] == "bad-1" and kept["topic"] == "orders"
    assert "amount: EUR has 2 decimal places; got 1.001" in kept["reason"]
    assert orders.get("/deadletters", params={"topic": "approval-outcomes"}).json() == []


def test_a_dead_letter_wrapped_by_the_sidecar_is_kept_as_it_was_sent(orders: TestClient) -> None:
    body = (
        b'{"specversion": "1.0", "id": "bad-2", "source": "shop", "type": "t",'
        b' "data": {"order_id": "o-3", "amount": "1.001", "currency": "EUR"}}'
    )
    assert deliver(orders, "orders", body)["status"] == "DROP"
    # rawPayload: the sidecar's own envelope, with the original bytes in data_base64.
    wrapped = {
        "specversion": "1.0",
        "id": "sidecar-envelope-1",
        "source": "orders",
        "type": "com.dapr.event.sent",
        "data_base64": base64.b64encode(body).decode(),
    }
    assert orders.post("/deadletters/orders", json=wrapped).json()["status"] == "SUCCESS"
    (kept,) = orders.get("/deadletters").json()
    assert (kept["event_id"], kept["source"], kept["type"]) == ("bad-2", "shop", "t")
    assert kept["body"] == body.decode()
    assert "amount: EUR has 2 decimal places; got 1.001" in kept["reason"]


def test_the_dead_letter_collector_keeps_each_letter_once_and_what_it_knows(
    orders: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    first = b'{"specversion": "1.0", "id": "dl-1", "source": "s", "type": "t", "data": {}}'
    second = first.replace(b"dl-1", b"dl-2")
    broken = b"\xff{not json" + b"x" * 5000  # not UTF-8, and longer than what is kept
    for body in (first, second, first, broken, broken):
        answer = orders.post("/deadletters/orders", content=body).json()
        assert answer == {"status": "SUCCESS", "reason": ""}
    kept = orders.get("/deadletters").json()
    assert [k["event_id"] for k in kept] == ["dl-1", "dl-2", "?", "?"]  # an unknown id twice
    unknown = "not a CloudEvent the sidecar could parse, or retries ran out"
    assert {k["reason"] for k in kept} == {unknown}
    assert kept[0]["received_at"].endswith("Z")
    assert datetime.fromisoformat(kept[0]["received_at"]).tzinfo is UTC
    assert kept[2]["body"] == "\ufffd{not json" + "x" * 4086  # the first 4096 bytes
    warned = [r.getMessage() for r in caplog.records if r.name == "plumbing.subscriptions"]
    assert warned[0] == f"dead letter on orders: dl-1 ({unknown})"
    assert orders.get("/openapi.json").json()["paths"]["/deadletters"]["get"]["tags"] == [
        "dead letters"
    ]


def test_the_dead_letter_collector_needs_the_app_token_and_retries_a_store_in_trouble(
    client: AppFactory, gateway
) -> None:
    guarded = client(create_app, ServiceSettings(app_id="orders", app_api_token="s3cret"))
    body = b'{"specversion": "1.0", "id": "dl-1", "source": "s", "type": "t", "data": {}}'
    assert guarded.post("/deadletters/orders", content=body).status_code == 401
    gateway.state.refuse_writes = ("deadletters",)
    token = {"dapr-api-token": "s3cret"}
    assert guarded.post("/deadletters/orders", content=body, headers=token).json() == {
        "status": "RETRY",
        "reason": "save state deadletters: the state store timed out",
    }


def test_a_dead_letter_that_is_json_but_no_object_is_kept_too(orders: TestClient) -> None:
    assert orders.post("/deadletters/orders", content=b'["o-1"]').json()["status"] == "SUCCESS"
    (kept,) = orders.get("/deadletters").json()
    assert (kept["event_id"], kept["type"], kept["body"]) == ("?", None, '["o-1"]')


@pytest.mark.parametrize(
    ("body", "event_id"),
    [
        (b'{"id": "ev-9", "data": {}}', "ev-9"),  # no specversion: no CloudEvent, but an id
        (b'{"data": {}}', "?"),
        (b'["ev-9"]', "?"),
        (b"{broken", "?"),
    ],
)
def test_a_body_that_is_no_cloudevent_is_dropped_under_what_id_it_has(
    orders: TestClient, gateway, body: bytes, event_id: str
) -> None:
    answer = deliver(orders, "orders", body)
    assert answer["status"] == "DROP"
    dropped, _ = gateway.state.get(f"dropped:orders:orders:{event_id}")
    assert dropped["reason"] == answer["reason"]
    assert datetime.fromisoformat(dropped["at"]).tzinfo is UTC and dropped["at"].endswith("Z")


def test_a_drop_or_a_refusal_goes_on_when_the_store_cannot_keep_why(
    client: AppFactory, gateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.state.refuse_writes = ("dropped:", "audit")
    orders = client(create_app, ServiceSettings(app_id="orders", app_api_token="s3cret"))
    token = {"dapr-api-token": "s3cret"}
    assert deliver(orders, "orders", b'{"id": "ev-9", "data": {}}', token)["status"] == "DROP"
    assert deliver(orders, "orders", ORDER)["detail"] == "missing or wrong dapr-api-token"
    warned = [r.getMessage() for r in caplog.records if r.name == "plumbing.subscriptions"]
    assert "could not record why ev-9 on orders was dropped" in warned
    assert "could not audit a refused delivery on orders" in warned


def test_reads_need_a_token_and_mutations_need_an_operator(client: AppFactory) -> None:
    viewer = client(create_app, ServiceSettings(app_id="orders"), who="viewer")
    assert viewer.get("/orders/o-1", headers={"Authorization": ""}).status_code == 401
    assert viewer.get("/orders/o-1", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert viewer.get("/orders/o-1").status_code == 404  # a viewer may read
    order = {"order_id": "o-9", "customer_id": "c", "amount": "10.00", "currency": "EUR"}
    refused = viewer.post("/orders", json=order)
    assert refused.status_code == 403 and "needs operator or admin" in refused.json()["detail"]
    anonymous = viewer.post("/orders", json=order, headers={"Authorization": ""})
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    outcomes = [(e["actor"], e["outcome"][:11]) for e in viewer.get("/audit").json()]
    assert outcomes == [("vic", "refused 403"), ("anonymous", "refused 401")]


def test_the_audit_chain_verifies_and_detects_tampering(orders: TestClient, gateway) -> None:
    for n in range(3):
        orders.post(
            "/orders",
            json={"order_id": f"o-{n}", "customer_id": "c", "amount": "10.00", "currency": "EUR"},
        )
    verdict = orders.get("/audit/verify").json()
    assert (verdict["intact"], verdict["summary"]) == (True, "3 records, chain intact")
    record, etag = gateway.state.get("audit:2")
    gateway.state.data["audit:2"] = ({**record, "actor": "mallory"}, etag)
    verdict = orders.get("/audit/verify").json()
    assert (verdict["intact"], verdict["summary"]) == (
        False,
        "record 2 was altered (its MAC does not match its content)",
    )


def test_production_settings_refuse_the_dev_tokens_at_startup(gateway) -> None:
    app = create_app(ServiceSettings(app_id="orders"), gateway=gateway)  # development=False
    with pytest.raises(AuthConfigError, match=r"api token entry \d+ \(\w+\): 'dev-' tokens") as err:
        TestClient(app).__enter__()
    assert "dev-admin-ada" not in str(err.value)


def test_production_settings_refuse_a_short_token_at_startup(gateway) -> None:
    gateway.secrets.secrets = {"api-tokens": {"short-but-not-dev": "ada:admin"}}
    app = create_app(ServiceSettings(app_id="orders"), gateway=gateway)
    with pytest.raises(AuthConfigError, match=r"entry 1 \(ada\): a token needs at least 32") as err:
        TestClient(app).__enter__()
    assert "short-but-not-dev" not in str(err.value)


def test_production_settings_serve_long_random_tokens(gateway) -> None:
    token = secrets.token_urlsafe(32)
    gateway.secrets.secrets = {"api-tokens": {token: "vic:viewer"}, **production_keys()}
    app = create_app(ServiceSettings(app_id="orders"), gateway=gateway)
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as prod:
        assert (
            prod.get("/orders/o-1", headers={"Authorization": f"Bearer {token}"}).status_code == 404
        )
        assert prod.get("/orders/o-1", headers=bearer("viewer")).status_code == 401


def place(client: TestClient, amount: str, currency: str, order_id: str = "o-9"):
    return client.post(
        "/orders",
        json={"order_id": order_id, "customer_id": "c", "amount": amount, "currency": currency},
    )


@pytest.mark.parametrize(
    ("amount", "currency", "kept", "text"),
    [
        ("2500", "EUR", "2500.00", "2500.00 EUR"),
        ("9000", "JPY", "9000", "9000 JPY (49.50 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20)"),
        ("9000.00", "JPY", "9000", "9000 JPY (49.50 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20)"),
        ("4900", "GBP", "4900.00", "4900.00 GBP (5586.00 EUR; 1 GBP = 1.14 EUR as of 2026-11-20)"),
    ],
)
def test_an_order_is_accepted_in_its_currency_s_minor_units_and_says_what_it_is_worth(
    orders: TestClient, gateway, amount: str, currency: str, kept: str, text: str
) -> None:
    resp = place(orders, amount, currency)
    assert resp.status_code == 202
    assert resp.json() == {
        "order_id": "o-9",
        "instance_id": "order-o-9",
        "amount": kept,
        "currency": currency,
        "amount_text": text,
    }
    (msg,) = gateway.publisher.to("orders")
    assert msg.model_dump(mode="json")["amount"] == kept
    (entry,) = orders.get("/audit").json()
    assert entry["reason"] == text


@pytest.mark.parametrize(
    ("amount", "currency", "says"),
    [
        ("9000.5", "JPY", "amount: JPY has no minor units: use a whole number (got 9000.5)"),
        ("12.345", "EUR", "amount: EUR has 2 decimal places; got 12.345"),
        ("100", "SEK", "currency: 'SEK' is not accepted: the approval policy has no exchange rate"),
        ("100", "XYZ", "currency: 'XYZ' is not an ISO 4217 currency code"),
    ],
)
def test_money_the_policy_cannot_route_is_a_clear_422(
    orders: TestClient, gateway, amount: str, currency: str, says: str
) -> None:
    resp = place(orders, amount, currency)
    assert resp.status_code == 422 and says in resp.json()["detail"]
    assert not gateway.publisher.published


def test_a_three_decimal_currency_with_a_configured_rate(client: AppFactory, gateway) -> None:
    policy = load_policy({"POLICY_RATES": "BHD=2.28@2026-11-19"})
    bhd = client(create_app, ServiceSettings(app_id="orders", policy=policy))
    resp = place(bhd, "12.3", "BHD")
    assert resp.status_code == 202
    assert resp.json()["amount_text"] == "12.300 BHD (28.04 EUR; 1 BHD = 2.28 EUR as of 2026-11-19)"
    assert "BHD has 3 decimal places" in place(bhd, "1.2345", "BHD", "o-10").json()["detail"]
    assert "'JPY' is not accepted" in place(bhd, "9000", "JPY", "o-11").json()["detail"]


def test_an_order_in_a_currency_without_a_rate_is_dropped_with_the_reason(
    client: AppFactory, gateway
) -> None:
    euro_only = client(
        create_app, ServiceSettings(app_id="orders", policy=load_policy({"POLICY_RATES": ""}))
    )
    usd = OrderPlaced(order_id="o-5", customer_id="c", amount="10", currency="USD", placed_at=NOW)
    answer = deliver(euro_only, "orders", usd)
    assert answer["status"] == "DROP"
    assert (
        "currency: 'USD' is not accepted" in answer["reason"]
        and "use one of EUR" in answer["reason"]
    )
    assert not gateway.workflows.scheduled


def test_the_workflow_input_carries_the_rates_and_minor_units(orders: TestClient, gateway) -> None:
    jpy = OrderPlaced(order_id="o-6", customer_id="c", amount="9000", currency="JPY", placed_at=NOW)
    assert deliver(orders, "orders", jpy)["status"] == "SUCCESS"
    ((_, _, inp),) = gateway.workflows.scheduled
    assert inp["order"]["amount"] == "9000"
    assert inp["policy"]["rates"]["JPY"] == {"rate": "0.0055", "as_of": "2026-11-20"}
    assert inp["policy"]["minor_units"]["JPY"] == 0


IQD_THREE_PLACES = {"POLICY_RATES": "IQD=0.00066@2026-11-20", "POLICY_MINOR_UNITS": "IQD=3"}


def test_an_amount_with_more_places_than_babel_gives_is_shown_as_accepted(
    client: AppFactory, gateway
) -> None:
    settings = ServiceSettings(app_id="orders", policy=load_policy(IQD_THREE_PLACES))
    resp = place(client(create_app, settings), "1500000.875", "IQD")
    assert resp.status_code == 202 and resp.json()["amount"] == "1500000.875"
    assert resp.json()["amount_text"] == (
        "1500000.875 IQD (990.00 EUR; 1 IQD = 0.00066 EUR as of 2026-11-20)"
    )


def test_a_pub_sub_that_is_down_is_a_503_worth_retrying(orders: TestClient, gateway) -> None:
    gateway.publisher.down = True
    resp = place(orders, "10", "EUR")
    assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
    assert resp.json() == {"detail": "pubsub is not ready"}


def test_an_order_with_control_characters_in_its_text_is_a_clear_422(
    orders: TestClient, gateway
) -> None:
    resp = orders.post(
        "/orders",
        json={
            "order_id": "o-7",
            "customer_id": "c-\u202e1",
            "amount": "10",
            "currency": "EUR",
            "items": [{"sku": "sku\x001", "quantity": 1}],
        },
    )
    assert resp.status_code == 422
    assert resp.json()["detail"] == (
        "customer_id: must be plain text without control characters (line breaks and tabs "
        "included) or bidirectional overrides; found U+202E (right-to-left override) at "
        "character 3; items.0.sku: must be plain text without control characters (line breaks "
        "and tabs included) or bidirectional overrides; found U+0000 (NUL) at character 4"
    )
    assert not gateway.publisher.published


def test_an_order_message_with_control_characters_is_dropped_with_the_reason(
    orders: TestClient, gateway
) -> None:
    data = ORDER.model_dump(mode="json") | {"customer_id": "c-1\n2026 orders INFO forged"}
    body = json.dumps({"specversion": "1.0", "id": "o-1", "source": "s", "type": "t", "data": data})
    answer = deliver(orders, "orders", body.encode())
    assert answer["status"] == "DROP"
    assert answer["reason"] == (
        "OrderPlaced is invalid: customer_id: must be plain text without control characters "
        "(line breaks and tabs included) or bidirectional overrides; found U+000A (line feed) "
        "at character 4"
    )
    assert not gateway.workflows.scheduled


def test_the_same_order_id_with_other_content_is_a_409_saying_what_differs(
    orders: TestClient, gateway
) -> None:
    first = place(orders, "10", "EUR", "o-8")
    assert first.status_code == 202
    assert place(orders, "10.00", "EUR", "o-8").status_code == 202  # identical: harmless
    again = place(orders, "20", "EUR", "o-8")
    assert again.status_code == 409
    assert again.json()["detail"] == (
        "order o-8 was placed already with other content (amount 20.00, was 10.00); an "
        "identical order is accepted again, a different one needs a new order_id"
    )
    assert [m.amount for m in gateway.publisher.to("orders")] == [Decimal("10.00")] * 2
    assert orders.get("/audit").json()[-1]["outcome"].startswith("refused 409: order o-8 was")
    # Over the topic, the first one is the order; the conflicting one is dead-lettered.
    (placed, _) = gateway.publisher.to("orders")
    assert deliver(orders, "orders", placed)["status"] == "SUCCESS"
    other = OrderPlaced.model_validate(
        placed.model_dump() | {"customer_id": "c-2", "items": [{"sku": "s-1", "quantity": 2}]}
    )
    answer = deliver(orders, "orders", other)
    assert answer == {
        "status": "DROP",
        "reason": "conflicting duplicate: customer_id c-2, was c; items [s-1 x2], were none",
    }
    assert len(gateway.workflows.scheduled) == 1
    (audited,) = orders.get("/audit", params={"action": "deliver orders"}).json()
    assert (audited["target"], audited["outcome"]) == ("o-8", f"refused: {answer['reason']}")


def test_an_identical_duplicate_on_the_topic_stays_harmless(orders: TestClient, gateway) -> None:
    assert deliver(orders, "orders", ORDER)["status"] == "SUCCESS"
    later = ORDER.model_copy(update={"placed_at": datetime(2026, 1, 6, tzinfo=UTC)})
    assert deliver(orders, "orders", later) == {"status": "SUCCESS", "reason": "duplicate order"}
    assert orders.get("/audit").json() == []


def test_an_order_that_was_not_published_does_not_block_a_corrected_one(
    orders: TestClient, gateway
) -> None:
    gateway.publisher.down = True
    assert place(orders, "10", "EUR", "o-4").status_code == 503
    gateway.publisher.down = False
    assert place(orders, "12", "EUR", "o-4").status_code == 202


def test_an_operator_start_with_other_content_is_a_409(orders: TestClient, gateway) -> None:
    assert place(orders, "10", "EUR", "o-3").status_code == 202
    body = {
        "name": "order_workflow",
        "input": {"order_id": "o-3", "customer_id": "c", "amount": "11", "currency": "EUR"}
        | {"placed_at": NOW.isoformat()},
    }
    resp = orders.post("/workflows", json=body)
    assert resp.status_code == 409 and "amount 11.00, was 10.00" in resp.json()["detail"]
    assert not gateway.workflows.scheduled
