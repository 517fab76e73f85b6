"""The sidecar that the injector wrote into an orders Pod of the dev overlay, started as a
kubelet would start it (tests/k8s/sidecar.py): it gets its certificate from sentry, its
components, configuration, resiliency and workflow policy from Dapr's operator, reads secrets
with the Pod's service account, and answers only the app's token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.k8s.conftest import NAMESPACE, Deployed, eventually
from tests.k8s.sidecar import Sidecar

pytestmark = [pytest.mark.k8s, pytest.mark.parametrize("deployed", ["dev"], indirect=True)]


@pytest.fixture(scope="module")
def sidecar(deployed: Deployed) -> Iterator[Sidecar]:
    plane = deployed.plane
    pods = eventually(
        lambda: plane.get("pods", "-n", NAMESPACE, "-l", "app=orders")["items"], "orders pods"
    )
    running = Sidecar(plane, pods[0], plane.run_dir / "sidecar")
    try:
        running.start()
        eventually(running.metadata, "the sidecar serving its metadata (see logs/daprd.log)")
        yield running
    finally:
        running.stop()


def test_it_loads_the_overlays_resources_from_the_operator(sidecar: Sidecar) -> None:
    meta: dict[str, Any] = sidecar.metadata()
    assert meta["id"] == "orders"
    loaded = {c["name"]: c["type"] for c in meta["components"]}
    assert loaded == {
        "kubernetes": "secretstores.kubernetes",
        "statestore": "state.redis",
        "pubsub": "pubsub.redis",
        "readiness": "pubsub.redis",
    }, "notify-webhook is the notifier's alone (its scopes)"
    assert (
        "ACTOR" in next(c for c in meta["components"] if c["name"] == "statestore")["capabilities"]
    )
    assert [p["name"] for p in meta["workflowAccessPolicies"]] == ["own-workflows-only"]
    assert [r["name"] for r in meta["resiliencies"]] == ["resiliency"]
    app = meta["appConnectionProperties"]
    assert app["port"] == 8101 and app["health"]["healthCheckPath"] == "/healthz"


def test_it_reads_only_the_secrets_its_configuration_allows(sidecar: Sidecar) -> None:
    status, body = sidecar.call("/v1.0/secrets/kubernetes/api-tokens")
    assert status == 200 and "ada:admin" in body
    assert sidecar.call("/v1.0/secrets/kubernetes/orders-signing-key")[0] == 200
    status, body = sidecar.call("/v1.0/secrets/kubernetes/approvals-signing-key")
    assert status == 403 and "access denied by policy" in body


def test_it_answers_only_the_apps_token(sidecar: Sidecar) -> None:
    assert sidecar.call("/v1.0/metadata", token="not-the-token")[0] == 401
    assert sidecar.call("/v1.0/metadata")[0] == 200
