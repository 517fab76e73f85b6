"""The skeleton every service shares (control.app.build_app): what it serves, by mode."""

import secrets

import pytest
from fastapi.testclient import TestClient

from approvals.app import create_app as approvals_app
from notifier.app import create_app as notifier_app
from notifier.settings import NotifierSettings
from orders.app import create_app as orders_app
from plumbing.settings import ServiceSettings
from tests.fakes import LOCAL, bearer, development, fake_gateway, production_keys

SERVICES = [
    (orders_app, ServiceSettings(app_id="orders")),
    (approvals_app, ServiceSettings(app_id="approvals")),
    (notifier_app, NotifierSettings(app_id="notifier")),
]


@pytest.mark.parametrize(("create_app", "settings"), SERVICES)
def test_production_serves_no_cdn_docs_page_but_keeps_the_schema(create_app, settings) -> None:
    assert not settings.development
    gateway = fake_gateway()
    gateway.secrets.secrets = {
        "api-tokens": {secrets.token_urlsafe(32): "vic:viewer"},
        **production_keys(),
    }
    with TestClient(create_app(settings, gateway=gateway), base_url=LOCAL) as prod:
        for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            assert prod.get(page).status_code == 404, page
        assert prod.get("/openapi.json").json()["info"]["title"] == settings.app_id


@pytest.mark.parametrize(("create_app", "settings"), SERVICES)
def test_development_serves_the_docs_pages(create_app, settings) -> None:
    with TestClient(
        create_app(development(settings), gateway=fake_gateway()), base_url=LOCAL
    ) as dev:
        assert "swagger-ui" in dev.get("/docs").text
        assert "redoc" in dev.get("/redoc").text
        assert dev.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(
    ("path", "content", "headers", "says"),
    [
        (
            "/orders",
            b'{"order_id": "o-1",, }',
            {"content-type": "application/json"},
            "the request body is not valid JSON: Expecting property name enclosed in double "
            "quotes (at character 20)",
        ),
        (
            "/orders",
            b'[{"order_id": "o-1"}]',
            {"content-type": "application/json"},
            "the request body must be a JSON object, not an array",
        ),
        (
            "/orders",
            b'{"order_id": "o-1"}',
            {"content-type": "text/plain"},
            "the request body was not read as JSON: send it with Content-Type: application/json",
        ),
        ("/orders", b"", {}, "the request body is empty; send a JSON object"),
        (
            "/orders",
            b'{"order_id": "o-1", "customer_id": "c", "amount": "1", "currency": "EUR",'
            b' "items": [["sku-1", 2]]}',
            {"content-type": "application/json"},
            "items.0: must be a JSON object, not an array",
        ),
        (
            "/approvals/o-1/decisions",
            b'"approve"',
            {"content-type": "application/json"},
            "the request body must be a JSON object, not a string",
        ),
    ],
)
def test_malformed_json_is_said_in_words(path, content, headers, says) -> None:
    create_app, settings = (
        (approvals_app, SERVICES[1][1]) if path.startswith("/approvals") else SERVICES[0]
    )
    gateway = fake_gateway()
    who = "manager" if path.startswith("/approvals") else "operator"
    with TestClient(
        create_app(development(settings), gateway=gateway),
        base_url=LOCAL,
        headers=bearer(who),
    ) as app:
        resp = app.post(path, content=content, headers=headers)
        assert resp.status_code == 422
        assert resp.json() == {"detail": says}
        (audited,) = app.get("/audit").json()
        assert audited["outcome"] == f"refused 422: {says}"
