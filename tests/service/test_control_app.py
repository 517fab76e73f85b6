"""The skeleton every service shares (control.app.build_app): what it serves, by mode."""

import secrets

import pytest
from fastapi.testclient import TestClient

from approvals.app import create_app as approvals_app
from notifier.app import create_app as notifier_app
from notifier.settings import NotifierSettings
from orders.app import create_app as orders_app
from plumbing.settings import ServiceSettings
from tests.fakes import LOCAL, development, fake_gateway, production_keys

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
