"""Benchmarks on the real stack, each printed as a ratio against bare Dapr in the same run.

    uv run python bench/run.py [--orders 10] [--instances 1000]

Starts the three apps plus a bare Dapr app (bench/baseline_app.py: the SDK and nothing of
ours) under their own sidecars, then measures:

1. decision -> order COMPLETED latency, against the floor of the same Dapr hops done bare
   (two pub/sub deliveries + two event-raise-to-completion round trips);
2. listing N instances through our index, against Dapr's list-then-get;
3. purging N finished instances with a bulk job, against a bare purge loop;
4. resident memory of each app process, against the bare app.

Numbers are for this machine and this run; they are not assertions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import yaml
from dapr.conf import settings
from dapr.ext.workflow import DaprWorkflowClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devstack.stack import Stack  # noqa: E402

ADMIN = {"Authorization": "Bearer dev-admin-ada"}
BOB = {"Authorization": "Bearer dev-manager-bob"}


def run_file(tmp: Path) -> Path:
    """dapr.yaml plus the baseline app, with absolute paths."""
    doc = yaml.safe_load((ROOT / "dapr.yaml").read_text())
    common = doc["common"]
    common["resourcesPath"] = str(ROOT / common["resourcesPath"])
    common["configFilePath"] = str(ROOT / common["configFilePath"])
    for app in doc["apps"]:
        app["appDirPath"] = str(ROOT)
    doc["apps"].append(
        {
            "appID": "baseline",
            "appDirPath": str(ROOT / "bench"),
            "appPort": 8199,
            "daprHTTPPort": 3599,
            "daprGRPCPort": 50199,
            "metricsPort": 9199,
            "appHealthCheckPath": "/healthz",
            "command": ["python", "baseline_app.py"],
        }
    )
    path = tmp / "dapr.bench.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def scopes_with_baseline() -> dict[str, dict[str, str]]:
    pubsub = yaml.safe_load((ROOT / "components" / "pubsub.yaml").read_text())
    meta = {m["name"]: m["value"] for m in pubsub["spec"]["metadata"]}
    return {
        "pubsub": {
            k: f"{meta[k]};baseline=bench" for k in ("publishingScopes", "subscriptionScopes")
        }
    }


def wf_client(stack: Stack, app: str) -> DaprWorkflowClient:
    # The SDK reads the sidecar's API token from its global settings when the client is built.
    settings.DAPR_API_TOKEN = stack.apps[app].dapr_api_token
    return DaprWorkflowClient(host="127.0.0.1", port=str(stack.apps[app].grpc_port))


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def bare_hop(stack: Stack, http: httpx.Client, n: int) -> list[float]:
    """Publish -> the bare subscriber has it."""
    base = stack.apps["baseline"]
    samples = []
    for _ in range(n):
        mid = uuid.uuid4().hex
        t0 = time.time()
        http.post(
            f"{base.dapr_url}/v1.0/publish/pubsub/bench",
            json={"id": mid},
            headers=base.dapr_headers,
        )
        while (at := http.get(f"{base.app_url}/arrival/{mid}").json()["at"]) is None:
            time.sleep(0.002)
        samples.append(at - t0)
    return samples


def bare_event(stack: Stack, n: int) -> list[float]:
    """raise_workflow_event -> a bare workflow with one activity has completed."""
    client = wf_client(stack, "baseline")
    samples = []
    for _ in range(n):
        iid = f"echo-{uuid.uuid4().hex[:12]}"
        client.schedule_new_workflow("echo_workflow", instance_id=iid)
        client.wait_for_workflow_start(iid, timeout_in_seconds=30)
        t0 = time.time()
        client.raise_workflow_event(iid, "go", data=None)
        client.wait_for_workflow_completion(iid, timeout_in_seconds=30)
        samples.append(time.time() - t0)
    return samples


def decision_to_completed(stack: Stack, http: httpx.Client, n: int) -> list[float]:
    orders, approvals = stack.apps["orders"].app_url, stack.apps["approvals"].app_url
    client = wf_client(stack, "orders")
    samples = []
    for _ in range(n):
        oid = f"bench-{uuid.uuid4().hex[:12]}"
        http.post(
            f"{orders}/orders",
            headers=ADMIN,
            json={"order_id": oid, "customer_id": "c", "amount": "1200.00", "currency": "EUR"},
        )
        while True:
            view = http.get(f"{approvals}/approvals/{oid}", headers=ADMIN)
            if view.status_code == 200 and view.json()["status"] == "pending":
                break
            time.sleep(0.01)
        t0 = time.time()
        http.post(f"{approvals}/approvals/{oid}/decisions", headers=BOB, json={"approved": True})
        state = client.wait_for_workflow_completion(f"order-{oid}", timeout_in_seconds=60)
        assert state is not None and state.runtime_status.name == "COMPLETED", state
        samples.append(time.time() - t0)
    return samples


def make_finished(http: httpx.Client, stack: Stack, prefix: str, n: int) -> list[str]:
    """n order_workflow instances that end at once (an order id they refuse)."""
    orders = stack.apps["orders"].app_url
    ids = [f"{prefix}-{i}" for i in range(n)]
    for iid in ids:
        resp = http.post(
            f"{orders}/workflows",
            headers=ADMIN,
            json={
                "name": "order_workflow",
                "instance_id": iid,
                "input": {"order": {"order_id": "not valid!"}, "policy": {}},
            },
        )
        if resp.status_code >= 300:
            raise RuntimeError(f"starting {iid}: {resp.status_code} {resp.text}")
    client = wf_client(stack, "orders")
    for iid in ids:
        client.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    return ids


def list_both_ways(http: httpx.Client, stack: Stack, n: int) -> tuple[float, float]:
    orders = stack.apps["orders"].app_url
    t0 = time.perf_counter()
    listed = http.get(f"{orders}/workflows", headers=ADMIN, params={"limit": 1000}).json()
    ours = time.perf_counter() - t0
    assert listed["total"] >= n, listed["total"]
    client = wf_client(stack, "orders")
    t0 = time.perf_counter()
    ids = list(client.iter_workflow_instance_ids(page_size=1000))
    states = [client.get_workflow_state(i, fetch_payloads=False) for i in ids]
    bare = time.perf_counter() - t0
    assert len(states) >= n
    return ours, bare


def purge_both_ways(
    http: httpx.Client, stack: Stack, ours_ids: list[str], bare_ids: list[str]
) -> tuple[float, float]:
    orders = stack.apps["orders"].app_url
    client = wf_client(stack, "orders")
    t0 = time.perf_counter()
    for iid in bare_ids:
        client.purge_workflow(iid)
    bare = time.perf_counter() - t0
    http.post(f"{orders}/workflows/reconcile", headers=ADMIN).raise_for_status()
    t0 = time.perf_counter()
    job = http.post(f"{orders}/workflows/jobs", headers=ADMIN, json={"action": "purge"}).json()
    while job["status"] != "done":
        time.sleep(0.05)
        job = http.get(f"{orders}/workflows/jobs/{job['job_id']}", headers=ADMIN).json()
    ours = time.perf_counter() - t0
    purged = sum(1 for r in job["results"].values() if r == "purged")
    assert purged >= len(ours_ids), job["results"]
    return purged / ours, len(bare_ids) / bare


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=10, help="decision latency samples")
    parser.add_argument("--instances", type=int, default=1000, help="for list and purge")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(
            run_file=run_file(Path(tmp)),
            run_dir=Path(tmp) / "run",
            free_ports=True,
            component_metadata=scopes_with_baseline(),
            also_scope=("baseline",),
        )
        with stack, httpx.Client(timeout=60) as http:
            rows: list[tuple[str, str, str, str]] = []
            hop = bare_hop(stack, http, 20)
            event = bare_event(stack, 20)
            ours = decision_to_completed(stack, http, args.orders)
            floor = 2 * statistics.median(hop) + 2 * statistics.median(event)
            rows.append(
                (
                    "decision -> order COMPLETED (median)",
                    f"{median_ms(ours):.0f} ms",
                    f"{floor * 1000:.0f} ms",
                    f"{statistics.median(ours) / floor:.1f}x",
                )
            )
            rows.append(("  bare pub/sub hop (median)", "", f"{median_ms(hop):.1f} ms", ""))
            rows.append(
                ("  bare raise -> completed (median)", "", f"{median_ms(event):.1f} ms", "")
            )
            t0 = time.perf_counter()
            mine = make_finished(http, stack, "bench-a", args.instances)
            theirs = make_finished(http, stack, "bench-b", args.instances)
            made = 2 * args.instances / (time.perf_counter() - t0)
            rows.append((f"start+finish {2 * args.instances} instances", f"{made:.0f}/s", "", ""))
            ours_list, bare_list = list_both_ways(http, stack, 2 * args.instances)
            rows.append(
                (
                    f"list {2 * args.instances} instances with status",
                    f"{ours_list * 1000:.0f} ms",
                    f"{bare_list * 1000:.0f} ms",
                    f"{bare_list / ours_list:.1f}x faster",
                )
            )
            ours_rate, bare_rate = purge_both_ways(http, stack, mine, theirs)
            rows.append(
                (
                    f"purge {args.instances} finished instances",
                    f"{ours_rate:.0f}/s",
                    f"{bare_rate:.0f}/s",
                    f"{ours_rate / bare_rate:.2f}x",
                )
            )
            pids = {p.name: p.pid for p in stack.procs}
            for app in ("orders", "approvals", "notifier"):
                rows.append(
                    (
                        f"RSS of the {app} app",
                        f"{rss_mb(pids[app]):.0f} MB",
                        f"{rss_mb(pids['baseline']):.0f} MB",
                        f"{rss_mb(pids[app]) / rss_mb(pids['baseline']):.1f}x",
                    )
                )
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'ours':>12}  {'bare Dapr':>12}  ratio")
    for name, a, b, ratio in rows:
        print(f"{name:<{width}}  {a:>12}  {b:>12}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
