"""/readyz says whether an app can work: its sidecar, and the state store and pub/sub it needs,
asked of a fake sidecar that fails the way a down or hung Redis makes the real one fail."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from approvals.app import create_app as approvals_app
from notifier.app import create_app as notifier_app
from notifier.settings import NotifierSettings
from orders.app import create_app as orders_app
from plumbing.settings import ServiceSettings
from tests.fakes import LOCAL, FakeSidecar, development, fake_gateway

SERVICES = [
    pytest.param(orders_app, ServiceSettings(app_id="orders"), id="orders"),
    pytest.param(approvals_app, ServiceSettings(app_id="approvals"), id="approvals"),
    pytest.param(notifier_app, NotifierSettings(app_id="notifier"), id="notifier"),
]


def client_of(create_app, settings, sidecar: FakeSidecar) -> TestClient:
    app = create_app(development(settings), gateway=fake_gateway(sidecar))
    return TestClient(app, base_url=LOCAL)


@pytest.mark.parametrize(("create_app", "settings"), SERVICES)
def test_ready_when_the_sidecar_state_store_and_pubsub_answer(create_app, settings) -> None:
    sidecar = FakeSidecar()
    with client_of(create_app, settings, sidecar) as client:
        resp = client.get("/readyz", headers={"host": "10.0.0.7"})  # a probe: any host
    assert (resp.status_code, resp.json()) == (200, {"status": "ready"})
    asked = sorted((r.method, r.url.path) for r in sidecar.asked)
    assert asked == [
        ("GET", "/v1.0/healthz/outbound"),
        ("GET", "/v1.0/metadata"),
        ("GET", "/v1.0/state/statestore/readyz-probe"),
        ("POST", "/v1.0/publish/readiness/readyz"),
    ]


@pytest.mark.parametrize(("create_app", "settings"), SERVICES)
def test_not_ready_while_redis_is_down(create_app, settings) -> None:
    sidecar = FakeSidecar(store="refused", broker="refused")
    with client_of(create_app, settings, sidecar) as client:
        resp = client.get("/readyz")
        assert client.get("/healthz").status_code == 200  # alive, only not ready
    assert resp.status_code == 503
    problems = resp.json()["problems"]
    store = problems.pop("state store statestore")
    assert store.startswith("a read failed: /v1.0/state/statestore/readyz-probe answered 500")
    assert "connect: connection refused" in store
    broker = problems.pop("pub/sub pubsub")
    assert broker.startswith(
        "a probe message to its broker failed: /v1.0/publish/readiness/readyz answered 500"
    )
    assert "connect: connection refused" in broker
    assert problems == {}


def test_not_ready_while_the_pubsub_broker_is_down_beside_another_state_store() -> None:
    """With PostgreSQL as the state store, Redis is the pub/sub alone: its loss must show."""
    sidecar = FakeSidecar(broker="hung")
    with client_of(orders_app, ServiceSettings(app_id="orders"), sidecar) as client:
        resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["problems"] == {
        "pub/sub pubsub": "a probe message to its broker failed: no answer within 2s"
    }


def test_a_hung_redis_is_not_ready() -> None:
    sidecar = FakeSidecar(store="hung")
    with client_of(orders_app, ServiceSettings(app_id="orders"), sidecar) as client:
        resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["problems"] == {
        "state store statestore": "a read failed: no answer within 2s"
    }


def test_a_component_the_sidecar_did_not_load_is_named() -> None:
    sidecar = FakeSidecar(components=("statestore", "readiness"))
    with client_of(
        orders_app, ServiceSettings(app_id="orders", pubsub="pubsub"), sidecar
    ) as client:
        resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["problems"] == {"pub/sub pubsub": "not loaded by the sidecar (see its log)"}


@pytest.mark.parametrize("how", ["refused", "hung"])
def test_without_its_sidecar_the_app_is_not_ready(how: str) -> None:
    with client_of(
        orders_app, ServiceSettings(app_id="orders"), FakeSidecar(sidecar=how)
    ) as client:
        resp = client.get("/readyz")
    assert resp.status_code == 503
    said = {"refused": "unreachable (ConnectError)", "hung": "no answer within 2s"}[how]
    assert resp.json()["problems"] == {"sidecar": said}


def test_without_the_probe_component_the_broker_is_said_to_be_unchecked() -> None:
    sidecar = FakeSidecar(components=("statestore", "pubsub"))
    with client_of(orders_app, ServiceSettings(app_id="orders"), sidecar) as client:
        resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["problems"] == {
        "pub/sub pubsub": "its broker cannot be checked: the sidecar has no component "
        "'readiness' (components/readiness.yaml)"
    }
