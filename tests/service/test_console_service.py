"""The console's page, script and stylesheet: served with a CSP that allows no inline code."""

import re

import pytest
from fastapi.testclient import TestClient

from orders.app import create_app
from plumbing.settings import ServiceSettings
from tests.service.conftest import AppFactory


@pytest.fixture
def orders(client: AppFactory) -> TestClient:
    return client(create_app, ServiceSettings(app_id="orders"))


def directives(policy: str) -> dict[str, str]:
    return dict(d.strip().split(" ", 1) for d in policy.split(";"))


def test_console_policy_allows_no_inline_code_nor_framing(orders: TestClient) -> None:
    for path in ("/console", "/console/app.js", "/console/app.css"):
        resp = orders.get(path, headers={"Authorization": ""})  # static: no token needed
        assert resp.status_code == 200, path
        policy = resp.headers["content-security-policy"]
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        found = directives(policy)
        assert found["script-src"] == "'self'" and found["style-src"] == "'self'"
        assert found["frame-ancestors"] == "'none'" and found["base-uri"] == "'none'"
        assert found["object-src"] == "'none'"
        assert resp.headers["x-content-type-options"] == "nosniff"


def test_console_page_has_no_inline_script_or_style(orders: TestClient) -> None:
    page = orders.get("/console").text
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/console/app.js">']
    assert "<style" not in page and "style=" not in page
    assert not re.search(r"\son[a-z]+=", page), "no inline event handlers"
    assert '<link rel="stylesheet" href="/console/app.css">' in page
    script = orders.get("/console/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "history.replaceState" in script.text
    assert orders.get("/console/app.css").headers["content-type"].startswith("text/css")
