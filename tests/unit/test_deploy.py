"""deploy/ must say what components/ says (which the e2e tier exercises): scopes, policies."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def resources(*paths: Path) -> dict[tuple[str, str], dict]:
    return {
        (d["kind"], d["metadata"]["name"]): d
        for p in paths
        for d in yaml.safe_load_all(p.read_text())
        if d
    }


def metadata(doc: dict) -> dict[str, object]:
    return {m["name"]: m.get("value", m.get("secretKeyRef")) for m in doc["spec"]["metadata"]}


def test_kubernetes_resources_keep_the_scopes_and_policies_of_components() -> None:
    local = resources(*sorted((ROOT / "components").glob("*.yaml")))
    cluster = resources(ROOT / "deploy" / "dapr-components.yaml")
    for name in ("pubsub", "readiness", "statestore"):
        here, there = metadata(local["Component", name]), metadata(cluster["Component", name])
        assert {k: v for k, v in here.items() if k != "redisHost"} == {
            k: v for k, v in there.items() if k not in ("redisHost", "redisPassword")
        }
        assert local["Component", name]["scopes"] == cluster["Component", name]["scopes"]
    assert local["Resiliency", "resiliency"]["spec"] == cluster["Resiliency", "resiliency"]["spec"]
    policy = ("WorkflowAccessPolicy", "own-workflows-only")
    assert local[policy]["spec"] == cluster[policy]["spec"]
    assert local[policy]["scopes"] == cluster[policy]["scopes"]


def test_every_app_of_dapr_yaml_is_deployed_with_a_sidecar() -> None:
    run = yaml.safe_load((ROOT / "dapr.yaml").read_text())
    deployments = [
        d for d in resources(ROOT / "deploy" / "apps.yaml").values() if d["kind"] == "Deployment"
    ]
    for app in run["apps"]:
        (dep,) = [d for d in deployments if d["metadata"]["name"] == app["appID"]]
        notes = dep["spec"]["template"]["metadata"]["annotations"]
        assert notes["dapr.io/enabled"] == "true" and notes["dapr.io/app-id"] == app["appID"]
        assert notes["dapr.io/app-port"] == str(app["appPort"])
    kustomize = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())
    assert all((ROOT / "deploy" / r).is_file() for r in kustomize["resources"])


def test_each_app_reads_only_its_own_secrets_in_kubernetes() -> None:
    cluster = resources(ROOT / "deploy" / "dapr-components.yaml")
    apps = resources(ROOT / "deploy" / "apps.yaml")
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


# The fields of a retry policy in Dapr's Resiliency schema (pkg/apis/resiliency/v1alpha1): in
# a local run an unknown field is dropped without a word; Kubernetes refuses the resource.
RETRY_FIELDS = {"policy", "duration", "maxInterval", "maxRetries", "matching"}


def test_retry_policies_use_only_fields_dapr_knows() -> None:
    for path in (ROOT / "components" / "resiliency.yaml", ROOT / "deploy" / "dapr-components.yaml"):
        (doc,) = [
            d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Resiliency"
        ]
        for name, retry in doc["spec"]["policies"]["retries"].items():
            assert set(retry) <= RETRY_FIELDS, (path.name, name, set(retry) - RETRY_FIELDS)
