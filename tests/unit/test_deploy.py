"""deploy/ must say what components/ says (which the e2e tier exercises): scopes, policies.

tests/k8s applies deploy/ to a real API server; these checks are the fast, static half."""

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "base"
OVERLAYS = ROOT / "deploy" / "overlays"


def resources(*paths: Path) -> dict[tuple[str, str], dict]:
    return {
        (d["kind"], d["metadata"]["name"]): d
        for p in paths
        for d in yaml.safe_load_all(p.read_text())
        if d
    }


def metadata(doc: dict) -> dict[str, object]:
    return {m["name"]: m.get("value", m.get("secretKeyRef")) for m in doc["spec"]["metadata"]}


def without(doc: dict, *keys: str) -> dict[str, object]:
    return {k: v for k, v in metadata(doc).items() if k not in keys}


def test_kubernetes_resources_keep_the_scopes_and_policies_of_components() -> None:
    local = resources(*sorted((ROOT / "components").glob("*.yaml")))
    cluster = resources(BASE / "dapr-components.yaml")
    address = ("redisHost", "redisPassword")
    for name in ("pubsub", "readiness"):
        here, there = local["Component", name], cluster["Component", name]
        assert without(here, *address) == without(there, *address)
        assert here["scopes"] == there["scopes"]
    assert local["Resiliency", "resiliency"]["spec"] == cluster["Resiliency", "resiliency"]["spec"]
    policy = ("WorkflowAccessPolicy", "own-workflows-only")
    assert local[policy]["spec"] == cluster[policy]["spec"]
    assert local[policy]["scopes"] == cluster[policy]["scopes"]


def test_each_overlay_has_the_state_store_of_its_local_twin() -> None:
    twins = {
        "dev": (ROOT / "components" / "statestore.yaml", ("redisHost", "redisPassword")),
        "production": (ROOT / "components" / "postgres" / "statestore.yaml", ("connectionString",)),
    }
    for overlay, (local_path, address) in twins.items():
        local = resources(local_path)["Component", "statestore"]
        cluster = resources(OVERLAYS / overlay / "statestore.yaml")["Component", "statestore"]
        assert local["spec"]["type"] == cluster["spec"]["type"]
        assert without(local, *address) == without(cluster, *address)
        assert local["scopes"] == cluster["scopes"]
        # Addresses and passwords are the cluster's secrets, never written in deploy/.
        assert all("secretKeyRef" in m for m in cluster["spec"]["metadata"] if m["name"] in address)


def test_every_app_of_dapr_yaml_is_deployed_with_a_sidecar() -> None:
    run = yaml.safe_load((ROOT / "dapr.yaml").read_text())
    deployments = [d for d in resources(BASE / "apps.yaml").values() if d["kind"] == "Deployment"]
    for app in run["apps"]:
        (dep,) = [d for d in deployments if d["metadata"]["name"] == app["appID"]]
        notes = dep["spec"]["template"]["metadata"]["annotations"]
        assert notes["dapr.io/enabled"] == "true" and notes["dapr.io/app-id"] == app["appID"]
        assert notes["dapr.io/app-port"] == str(app["appPort"])
    for folder in (BASE, OVERLAYS / "dev", OVERLAYS / "production"):
        kustomize = yaml.safe_load((folder / "kustomization.yaml").read_text())
        assert all((folder / r).exists() for r in kustomize["resources"]), folder


def test_each_app_reads_only_its_own_secrets_in_kubernetes() -> None:
    cluster = resources(BASE / "dapr-components.yaml")
    apps = resources(BASE / "apps.yaml")
    rbac = resources(BASE / "rbac.yaml")
    signing = {f"{a}-signing-key" for a in ("orders", "approvals")}
    for (kind, name), dep in apps.items():
        if kind != "Deployment":
            continue
        notes = dep["spec"]["template"]["metadata"]["annotations"]
        assert notes["dapr.io/app-token-secret"] == f"{name}-app-api-token"
        assert notes["dapr.io/api-token-secret"] == f"{name}-dapr-api-token"
        config = cluster["Configuration", notes["dapr.io/config"]]
        (scope,) = config["spec"]["secrets"]["scopes"]
        assert scope["storeName"] == "kubernetes" and scope["defaultAccess"] == "deny"
        mine = set(scope["allowedSecrets"]) & signing
        assert mine == ({f"{name}-signing-key"} if f"{name}-signing-key" in signing else set())
        # Kubernetes lets its service account read exactly what Dapr lets its sidecar read.
        assert dep["spec"]["template"]["spec"]["serviceAccountName"] == name
        (rule,) = rbac["Role", f"{name}-secrets"]["rules"]
        assert rule["verbs"] == ["get"] and set(rule["resourceNames"]) == set(
            scope["allowedSecrets"]
        )
        binding = rbac["RoleBinding", f"{name}-secrets"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name}]


# The fields of a retry policy in Dapr's Resiliency schema (pkg/apis/resiliency/v1alpha1): in
# a local run an unknown field is dropped without a word; Kubernetes refuses the resource.
RETRY_FIELDS = {"policy", "duration", "maxInterval", "maxRetries", "matching"}


def test_retry_policies_use_only_fields_dapr_knows() -> None:
    for path in (ROOT / "components" / "resiliency.yaml", BASE / "dapr-components.yaml"):
        (doc,) = [
            d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Resiliency"
        ]
        for name, retry in doc["spec"]["policies"]["retries"].items():
            assert set(retry) <= RETRY_FIELDS, (path.name, name, set(retry) - RETRY_FIELDS)


def test_every_app_is_replicated_budgeted_and_fenced() -> None:
    objects = resources(
        BASE / "apps.yaml", BASE / "availability.yaml", BASE / "network-policies.yaml"
    )
    for (kind, name), dep in objects.items():
        if kind != "Deployment":
            continue
        assert "replicas" not in dep["spec"], "the HorizontalPodAutoscaler owns the count"
        assert objects["HorizontalPodAutoscaler", name]["spec"]["minReplicas"] >= 2
        assert objects["PodDisruptionBudget", name]["spec"]["selector"] == dep["spec"]["selector"]
        fence = objects["NetworkPolicy", name]["spec"]
        assert fence["podSelector"] == dep["spec"]["selector"]
        (app,) = dep["spec"]["template"]["spec"]["containers"]
        assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(app)
        assert set(app["resources"]) == {"requests", "limits"}
        notes = dep["spec"]["template"]["metadata"]["annotations"]
        for bound in ("cpu-request", "cpu-limit", "memory-request", "memory-limit"):
            assert f"dapr.io/sidecar-{bound}" in notes
    assert objects["NetworkPolicy", "default-deny-ingress"]["spec"]["podSelector"] == {}


def test_the_e_mailed_decision_links_point_at_a_host_approvals_answers() -> None:
    apps = resources(BASE / "apps.yaml")

    def env(app: str) -> dict[str, str]:
        pod = apps["Deployment", app]["spec"]["template"]["spec"]
        (container,) = (c for c in pod["containers"] if c["name"] == app)
        return {e["name"]: e["value"] for e in container["env"] if "value" in e}

    link_host = urlsplit(env("notifier")["DECISION_LINK_BASE"]).hostname
    assert link_host in env("approvals")["ALLOWED_HOSTS"].split(",")


MONITORING = ROOT / "deploy" / "monitoring"
# Dapr's metrics the alerts and the dashboard use; tests/e2e/test_observability.py checks that
# a live sidecar serves each of them.
DAPR_METRICS = {
    "dapr_component_pubsub_ingress_count",
    "dapr_component_pubsub_egress_latencies_bucket",
    "dapr_runtime_workflow_execution_count",
    "dapr_runtime_workflow_activity_execution_count",
    "dapr_runtime_workflow_activity_execution_latency_bucket",
}
KUBE_STATE_METRICS = {"kube_pod_container_status_ready"}
PROMQL_WORDS = {"sum", "max", "by", "rate", "increase", "histogram_quantile", "and", "or"}


def app_metric_names() -> set[str]:
    """Every series name the apps can serve, as Prometheus sees it (with its suffixes)."""
    from plumbing.metrics import Metrics, ReadModelGauges

    families = [*Metrics().registry.collect(), *ReadModelGauges(dict).collect()]
    names = set()
    for family in families:
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


def metric_names(expr: str) -> set[str]:
    """The series an expression reads: its identifiers less label matchers, groupings, ranges,
    strings, numbers and PromQL's own words."""
    bare = re.sub(r"\{[^}]*\}|\b(by|without)\s*\([^)]*\)|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
    return set(re.findall(r"[a-z_][a-z0-9_]*", bare)) - PROMQL_WORDS


def alert_rules() -> list[dict]:
    (doc,) = [d for d in yaml.safe_load_all((MONITORING / "rules.yaml").read_text()) if d]
    return [r for group in doc["spec"]["groups"] for r in group["rules"]]


def test_alerts_and_the_dashboard_read_only_metrics_that_exist() -> None:
    known = app_metric_names() | DAPR_METRICS | KUBE_STATE_METRICS
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    exprs = [r["expr"] for r in alert_rules()] + [
        t["expr"] for p in dashboard["panels"] for t in p["targets"]
    ]
    for expr in exprs:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        assert metric_names(expr) and metric_names(expr) <= known, (
            expr,
            metric_names(expr) - known,
        )
    alerts = {r["alert"] for r in alert_rules()}
    assert {"ApprovalsOverdue", "DeadLettersGrowing", "WorkflowsFailing"} <= alerts
    assert "DaprSidecarNotReady" in alerts
    assert all(r["annotations"]["summary"] for r in alert_rules())


def test_the_checker_would_catch_a_misspelt_metric() -> None:
    assert metric_names('sum by (tier) (approvals_overdu{tier="vp"}) > 0') == {"approvals_overdu"}
    assert "approvals_overdu" not in app_metric_names() | DAPR_METRICS


def test_apps_and_sidecars_send_spans_to_one_collector_and_are_scraped() -> None:
    cluster = resources(BASE / "dapr-components.yaml")
    apps = resources(BASE / "apps.yaml")
    monitors = resources(MONITORING / "podmonitors.yaml")
    scrape = monitors["PodMonitor", "order-approvals-apps"]["spec"]["podMetricsEndpoints"][0]
    assert scrape["authorization"]["type"] == "Bearer"  # /metrics wants a token
    for (kind, name), dep in apps.items():
        if kind != "Deployment":
            continue
        pod = dep["spec"]["template"]
        (container,) = (c for c in pod["spec"]["containers"] if c["name"] == name)
        env = {e["name"]: e.get("value") for e in container["env"]}
        tracing = cluster["Configuration", pod["metadata"]["annotations"]["dapr.io/config"]]
        otel = tracing["spec"]["tracing"]["otel"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://{otel['endpointAddress']}"
        assert tracing["spec"]["tracing"]["samplingRate"] == "1"
        assert scrape["port"] in {p.get("name") for p in container["ports"]}
    kustomize = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert all((MONITORING / r).is_file() for r in kustomize["resources"])
