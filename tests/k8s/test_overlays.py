"""deploy/'s overlays applied to a real API server with Dapr's real sidecar injector.

Every object must be accepted (Dapr's CRD schemas, Pod Security "restricted", the webhook),
the controllers must turn each Deployment into two Pods, each Pod must carry the daprd
container that its annotations ask for, and Dapr's operator must give each app its sidecar
Service. No kubelet runs: Pods stay Pending (docs/operations.md).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.k8s.conftest import NAMESPACE, Deployed, eventually

pytestmark = pytest.mark.k8s

APPS = {"orders": 8101, "approvals": 8102, "notifier": 8103}


def pods_of(deployed: Deployed, app: str, count: int = 2) -> list[dict[str, Any]]:
    """The app's Pods, once there are `count` of them."""

    def pods() -> list[dict[str, Any]]:
        items = deployed.plane.get("pods", "-n", NAMESPACE, "-l", f"app={app}")["items"]
        return items if len(items) == count else []

    return eventually(pods, f"{count} pods of {app}")


def flags(args: list[str]) -> dict[str, str]:
    """daprd's command line as {flag: value}; a flag without a value maps to ''."""
    parsed: dict[str, str] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            following = args[i + 1] if i + 1 < len(args) else "--"
            parsed[arg[2:]] = "" if following.startswith("--") else following
    return parsed


def test_every_object_of_the_overlay_is_accepted(deployed: Deployed) -> None:
    rendered = list(
        yaml.safe_load_all(deployed.plane.kubectl("kustomize", str(deployed.path)).stdout)
    )
    stored = deployed.plane.get("-k", str(deployed.path))["items"]

    def key(doc: dict[str, Any]) -> tuple[str, str, str]:
        meta = doc["metadata"]
        return doc["kind"], meta.get("namespace", ""), meta["name"]

    assert {key(d) for d in stored} == {key(d) for d in rendered}
    kinds = {d["kind"] for d in rendered}
    assert {"Deployment", "Component", "Resiliency", "Configuration", "NetworkPolicy"} <= kinds


@pytest.mark.parametrize("app", sorted(APPS))
def test_each_deployment_becomes_two_pods_through_its_autoscaler(
    deployed: Deployed, app: str
) -> None:
    pods = pods_of(deployed, app)
    # deploy/ sets no replica count: the HorizontalPodAutoscaler raised it to its minimum.
    assert deployed.plane.get("deployment", app, "-n", NAMESPACE)["spec"]["replicas"] == 2
    for pod in pods:
        (owner,) = pod["metadata"]["ownerReferences"]
        assert owner["kind"] == "ReplicaSet"
        rs = deployed.plane.get("replicaset", owner["name"], "-n", NAMESPACE)
        assert [o["name"] for o in rs["metadata"]["ownerReferences"]] == [app]
        # No kubelet and no scheduler here: accepted, never run.
        assert pod["status"]["phase"] == "Pending" and "nodeName" not in pod["spec"]


@pytest.mark.parametrize("app", sorted(APPS))
def test_every_pod_has_the_sidecar_its_annotations_ask_for(deployed: Deployed, app: str) -> None:
    for pod in pods_of(deployed, app):
        notes = pod["metadata"]["annotations"]
        containers = {c["name"]: c for c in pod["spec"]["containers"]}
        assert set(containers) == {app, "daprd"}, "the injector added daprd"
        daprd = containers["daprd"]
        args = flags(daprd["args"])
        assert args["app-id"] == app
        assert args["app-port"] == str(APPS[app]) == notes["dapr.io/app-port"]
        assert args["config"] == f"{app}-config"
        assert args["app-protocol"] == "http"
        assert args["app-health-check-path"] == "/healthz"
        assert {"enable-app-health-check", "log-as-json", "enable-mtls"} <= set(args)
        assert args["mode"] == "kubernetes"
        # The sidecar's API listens on the pod's loopback only: the app beside it alone.
        assert set(args["dapr-listen-addresses"].split(",")) == {"[::1]", "127.0.0.1"}
        env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in daprd["env"]}
        assert env["DAPR_API_TOKEN"] == {"name": f"{app}-dapr-api-token", "key": "token"}
        assert env["APP_API_TOKEN"] == {"name": f"{app}-app-api-token", "key": "token"}
        resources = daprd["resources"]
        assert resources["requests"]["cpu"] == notes["dapr.io/sidecar-cpu-request"]
        assert resources["limits"]["cpu"] == notes["dapr.io/sidecar-cpu-limit"]
        assert resources["requests"]["memory"] == notes["dapr.io/sidecar-memory-request"]
        assert resources["limits"]["memory"] == notes["dapr.io/sidecar-memory-limit"]
        hardened = {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert {k: daprd["securityContext"].get(k) for k in hardened} == hardened
        # The app sends its sidecar the token the sidecar expects.
        app_env = {
            e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in containers[app]["env"]
        }
        assert app_env["DAPR_API_TOKEN"] == env["DAPR_API_TOKEN"]


def test_each_disruption_budget_counts_its_apps_pods(deployed: Deployed) -> None:
    for app in APPS:
        pods_of(deployed, app)

        def status(app: str = app) -> dict[str, Any]:
            found = deployed.plane.get("pdb", app, "-n", NAMESPACE).get("status", {})
            return found if found.get("expectedPods") == 2 else {}

        counted = eventually(status, f"the disruption controller counting {app}'s pods")
        # None is ready (no kubelet), so no voluntary disruption is allowed.
        assert counted["disruptionsAllowed"] == 0


def test_the_namespace_refuses_a_pod_that_may_run_as_root(deployed: Deployed) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root-shell", "namespace": NAMESPACE},
        "spec": {"containers": [{"name": "shell", "image": "busybox:1.37"}]},
    }
    out = deployed.plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(pod), check=False
    )
    assert out.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in out.stderr


def test_the_overlay_chooses_its_stores(deployed: Deployed) -> None:
    def component(name: str) -> tuple[str, dict[str, Any]]:
        spec = deployed.plane.get("components.dapr.io", name, "-n", NAMESPACE)["spec"]
        return spec["type"], {m["name"]: m for m in spec["metadata"]}

    store_type, store = component("statestore")
    _, pubsub = component("pubsub")
    if deployed.overlay == "dev":
        assert store_type == "state.redis"
        assert store["redisHost"]["secretKeyRef"] == {"name": "redis-auth", "key": "host"}
        assert pubsub["enableTLS"]["value"] == "false"
        assert pods_of(deployed, "redis", count=1)
    else:
        assert store_type == "state.postgresql"
        assert store["connectionString"]["secretKeyRef"] == {
            "name": "postgres-auth",
            "key": "connectionString",
        }
        assert pubsub["enableTLS"]["value"] == "true"
        assert deployed.plane.get("pods", "-n", NAMESPACE, "-l", "app=redis")["items"] == []
    assert store["actorStateStore"]["value"] == "true"


@pytest.mark.parametrize("app", sorted(APPS))
def test_dapr_operator_gives_each_app_its_sidecar_service(deployed: Deployed, app: str) -> None:
    def service() -> dict[str, Any]:
        found = deployed.plane.get("services", "-n", NAMESPACE)["items"]
        return next((s for s in found if s["metadata"]["name"] == f"{app}-dapr"), {})

    spec = eventually(service, f"the operator's {app}-dapr service")["spec"]
    assert spec["selector"] == {"app": app} and spec["clusterIP"] == "None"
    assert {p["name"]: p["targetPort"] for p in spec["ports"]}["dapr-internal"] == 50002


@pytest.mark.parametrize("app", sorted(APPS))
def test_each_service_account_may_read_only_its_apps_secrets(deployed: Deployed, app: str) -> None:
    def may_read(secret: str) -> bool:
        account = f"system:serviceaccount:{NAMESPACE}:{app}"
        out = deployed.plane.kubectl(
            "auth", "can-i", "get", f"secret/{secret}", "-n", NAMESPACE, f"--as={account}",
            check=False,
        )  # fmt: skip
        return out.stdout.strip() == "yes"

    assert may_read("api-tokens") and may_read("audit-key")
    assert may_read("orders-signing-key") == (app == "orders")
    assert may_read("approvals-signing-key") == (app == "approvals")
    assert not may_read("redis-auth") and not may_read(f"{app}-dapr-api-token")
