"""The benchmark: issue 13's six figures, each beside its bare-Dapr baseline on the same stack.

    uv run python bench/run.py [--quick] [--orders 300] [--rounds 2]

Starts the three apps, a bare Dapr app (bench/baseline_app.py: the SDK and nothing of ours)
and an app with one subscription through our helper (bench/ours_app.py), each under its own
sidecar, sharing redis, sentry, placement and scheduler. Then, after a warm-up that is not
counted, with rounds alternating between ours and bare:

  M1  auto-approved orders per second, published to `orders` in a burst, against a bare
      subscription that schedules a workflow of 5 no-op activities;
  M2  CPU seconds per order in that burst: every process of the side (apps, sidecars) and the
      shared ones (redis, sentry, placement, scheduler), from /proc;
  M3  decision POST -> order COMPLETED, p50/p95/p99, decisions posted at a fixed rate (half of
      our M1 saturation, open loop) against the same hops done bare (publish, raise, an
      activity that publishes, raise, the activities our order runs after an approval);
  M4  memory held per 1,000 orders waiting for a manager (RSS of every process plus Redis's
      used memory), against bare workflows that wait the same way (two per order, each on an
      event and a timer), and our apps' own share;
  M5  purging finished instances: our bulk job against a bare sequential purge loop;
  M6  one delivery through our subscription helper against a bare subscriber: latency one by
      one, and throughput in a burst.

Prints a table and writes bench/results/<date>.json. Numbers are for this machine and this
run, with whatever else it was doing; they are not assertions.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.figures import ADMIN, Bench, wf_client  # noqa: E402
from devstack.stack import Stack  # noqa: E402

EXTRA_APPS = {
    # app id: (command, topics it publishes to and subscribes to)
    "baseline": ("baseline_app.py", "bench,bench-orders,bench-decisions,bench-outcomes"),
    "benchours": ("ours_app.py", "bench-ours"),
}
GOALS = {"M1": 1.0, "M2": 1.3, "M3 p50": 1.5, "M3 p99": 3.0, "M4": 1.2, "M5": 2.0, "M6": 1.2}


def run_file(tmp: Path) -> Path:
    """dapr.yaml plus the two bench apps, with absolute paths."""
    doc = yaml.safe_load((ROOT / "dapr.yaml").read_text())
    common = doc["common"]
    common["resourcesPath"] = str(ROOT / common["resourcesPath"])
    common["configFilePath"] = str(ROOT / common["configFilePath"])
    for app in doc["apps"]:
        app["appDirPath"] = str(ROOT)
    for n, (app_id, (script, _)) in enumerate(EXTRA_APPS.items()):
        doc["apps"].append(
            {
                "appID": app_id,
                "appDirPath": str(ROOT / "bench"),
                "appPort": 8198 + n,
                "daprHTTPPort": 3598 + n,
                "daprGRPCPort": 50198 + n,
                "metricsPort": 9198 + n,
                "appHealthCheckPath": "/healthz",
                "command": ["python", script],
            }
        )
    path = tmp / "dapr.bench.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def scopes_with_bench_apps() -> dict[str, dict[str, str]]:
    pubsub = yaml.safe_load((ROOT / "components" / "pubsub.yaml").read_text())
    meta = {m["name"]: m["value"] for m in pubsub["spec"]["metadata"]}
    extra = ";".join(f"{app}={topics}" for app, (_, topics) in EXTRA_APPS.items())
    return {"pubsub": {k: f"{meta[k]};{extra}" for k in ("publishingScopes", "subscriptionScopes")}}


def purge_both_ways(bench: Bench) -> tuple[float, float]:
    """Our bulk job over the orders app's finished instances, against a bare loop purging the
    baseline app's finished instances one by one."""
    stack, http = bench.stack, bench.http
    client = wf_client(stack, "baseline")
    bare_ids = [
        i for i in client.iter_workflow_instance_ids(page_size=1000) if i.startswith("bare-")
    ]
    bare_ids = [i for i in bare_ids if not i.startswith(("bare-wait", "bare-approval"))]
    t0 = time.perf_counter()
    for iid in bare_ids:
        client.purge_workflow(iid)
    bare = len(bare_ids) / (time.perf_counter() - t0)
    orders = stack.apps["orders"].app_url
    t0 = time.perf_counter()
    job = http.post(f"{orders}/workflows/jobs", headers=ADMIN, json={"action": "purge"}).json()
    while job["status"] != "done":
        time.sleep(0.05)
        job = http.get(f"{orders}/workflows/jobs/{job['job_id']}", headers=ADMIN).json()
    ours = sum(1 for r in job["results"].values() if r == "purged") / (time.perf_counter() - t0)
    return ours, bare


def list_both_ways(bench: Bench) -> tuple[float, float, int]:
    """Seconds to list (up to) 1,000 of the orders app's instances with their status: our
    index, against Dapr's list of ids then a state read for each."""
    orders = bench.stack.apps["orders"].app_url
    t0 = time.perf_counter()
    listed = bench.http.get(f"{orders}/workflows", headers=ADMIN, params={"limit": 1000}).json()
    ours = time.perf_counter() - t0
    client = wf_client(bench.stack, "orders")
    t0 = time.perf_counter()
    ids = list(client.iter_workflow_instance_ids(page_size=1000))[:1000]
    for iid in ids:
        client.get_workflow_state(iid, fetch_payloads=False)
    bare = time.perf_counter() - t0
    return ours, bare, min(len(ids), len(listed["instances"]))


def alternate(rounds: int, one: Any) -> dict[str, list[Any]]:
    """Run `one(side)` for each side in every round, the order flipped each round."""
    got: dict[str, list[Any]] = {"ours": [], "bare": []}
    for r in range(rounds):
        for side in ("ours", "bare") if r % 2 == 0 else ("bare", "ours"):
            got[side].append(one(side))
    return got


def best(results: list[dict[str, Any]], key: str, low: bool = False) -> Any:
    values = [r[key] for r in results]
    return min(values) if low else max(values)


def figures(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    say = print
    say("warm-up (not counted)")
    for side in ("ours", "bare"):
        bench.burst(side, 20)
        bench.deliveries(side, 20, 5)
    say(f"M4: {args.waiting} orders waiting for a manager, ours then bare")
    m4 = {side: bench.waiting(side, args.waiting) for side in ("ours", "bare")}
    say(f"M1/M2: bursts of {args.orders} auto-approved orders, {args.rounds} rounds")
    m1 = alternate(args.rounds, lambda side: bench.burst(side, args.orders))
    saturation = best(m1["ours"], "throughput")
    rate = saturation / 2
    say(f"M3: {args.decisions} decisions at {rate:.1f}/s (half of our saturation), each side")
    pending = {side: bench.pending_orders(side, args.decisions * args.rounds) for side in m1}
    m3 = alternate(
        args.rounds,
        lambda side: bench.decisions(
            side, [pending[side].pop() for _ in range(args.decisions)], rate
        ),
    )
    say(f"M6: {args.deliveries} deliveries in a burst, 30 one by one")
    m6 = alternate(args.rounds, lambda side: bench.deliveries(side, args.deliveries, 30))
    say("listing the orders app's instances with their status")
    listing = list_both_ways(bench)
    say("M5: purge what the runs left finished")
    ours_purge, bare_purge = purge_both_ways(bench)
    return {
        "M1": {s: best(m1[s], "throughput") for s in m1},
        "M2": {s: best(m1[s], "cpu_per_order", low=True) for s in m1},
        "M3": {s: min((x for x in m3[s]), key=lambda x: x.p50).__dict__ for s in m3},
        "M3 rate": rate,
        "M4": m4,
        "M5": {"ours": ours_purge, "bare": bare_purge},
        "M6": {
            s: {
                "latency": min(x["latency"].p50 for x in m6[s]),
                "throughput": best(m6[s], "throughput"),
            }
            for s in m6
        },
        "listing": {"ours": listing[0], "bare": listing[1], "instances": listing[2]},
        "M1 latency": {s: min(x["latency"].p50 for x in m1[s]) for s in m1},
    }


def table(f: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(figure, ours, bare, ratio, goal) rows; ratios are ours/bare, higher-is-better ones
    inverted so that every ratio reads 'how many times bare'."""
    m3o, m3b = f["M3"]["ours"], f["M3"]["bare"]
    m4o, m4b = f["M4"]["ours"], f["M4"]["bare"]
    m6o, m6b = f["M6"]["ours"], f["M6"]["bare"]
    ms = 1000
    return [
        (
            "M1 orders/s (burst)",
            f"{f['M1']['ours']:.1f}",
            f"{f['M1']['bare']:.1f}",
            f"{f['M1']['ours'] / f['M1']['bare']:.2f}x",
            ">= 1.0x",
        ),
        (
            "M2 CPU ms per order",
            f"{f['M2']['ours'] * ms:.0f}",
            f"{f['M2']['bare'] * ms:.0f}",
            f"{f['M2']['ours'] / f['M2']['bare']:.2f}x",
            "<= 1.3x",
        ),
        (
            f"M3 decision->COMPLETED p50 ms at {f['M3 rate']:.1f}/s",
            f"{m3o['p50'] * ms:.0f}",
            f"{m3b['p50'] * ms:.0f}",
            f"{m3o['p50'] / m3b['p50']:.2f}x",
            "<= 1.5x",
        ),
        (
            "M3 p95 ms",
            f"{m3o['p95'] * ms:.0f}",
            f"{m3b['p95'] * ms:.0f}",
            f"{m3o['p95'] / m3b['p95']:.2f}x",
            "",
        ),
        (
            "M3 p99 ms",
            f"{m3o['p99'] * ms:.0f}",
            f"{m3b['p99'] * ms:.0f}",
            f"{m3o['p99'] / m3b['p99']:.2f}x",
            "<= 3x",
        ),
        (
            "M4 MiB per 1,000 waiting orders",
            f"{m4o['all_mib_per_1000']:.0f}",
            f"{m4b['all_mib_per_1000']:.0f}",
            f"{m4o['all_mib_per_1000'] / max(m4b['all_mib_per_1000'], 0.1):.2f}x",
            "<= 1.2x",
        ),
        (
            "M4 our apps' own share, MiB",
            f"{m4o['apps_mib_per_1000']:.1f}",
            f"{m4b['apps_mib_per_1000']:.1f}",
            "",
            "<= 10 MiB",
        ),
        (
            f"list {f['listing']['instances']} instances with status, ms",
            f"{f['listing']['ours'] * ms:.0f}",
            f"{f['listing']['bare'] * ms:.0f}",
            f"{f['listing']['ours'] / f['listing']['bare']:.2f}x",
            "",
        ),
        (
            "M5 purge, instances/s",
            f"{f['M5']['ours']:.0f}",
            f"{f['M5']['bare']:.0f}",
            f"{f['M5']['ours'] / f['M5']['bare']:.2f}x",
            ">= 2x",
        ),
        (
            "M6 delivery latency p50 ms",
            f"{m6o['latency'] * ms:.1f}",
            f"{m6b['latency'] * ms:.1f}",
            f"{m6o['latency'] / m6b['latency']:.2f}x",
            "<= 1.2x",
        ),
        (
            "M6 deliveries/s (burst)",
            f"{m6o['throughput']:.0f}",
            f"{m6b['throughput']:.0f}",
            f"{m6o['throughput'] / m6b['throughput']:.2f}x",
            ">= 0.8x",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts, one round (< 1 min)")
    parser.add_argument("--orders", type=int, default=300, help="M1: orders per burst")
    parser.add_argument("--decisions", type=int, default=60, help="M3: decisions per round")
    parser.add_argument("--waiting", type=int, default=500, help="M4: waiting orders")
    parser.add_argument("--deliveries", type=int, default=300, help="M6: messages per burst")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per figure, alternated")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--run-dir",
        type=Path,
        help="keep the stack's logs and data here (default: a temporary dir)",
    )
    args = parser.parse_args()
    if args.quick:
        args.orders, args.decisions, args.waiting, args.deliveries, args.rounds = 40, 10, 40, 40, 1
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(
            run_file=run_file(Path(tmp)),
            run_dir=args.run_dir or Path(tmp) / "run",
            free_ports=True,
            component_metadata=scopes_with_bench_apps(),
            also_scope=tuple(EXTRA_APPS),
        )
        with stack, httpx.Client(timeout=60) as http:
            found = figures(Bench(stack, http), args)
    rows = table(found)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'figure':<{width}}  {'ours':>8}  {'bare':>8}  {'ratio':>7}  goal")
    for name, ours, bare, ratio, goal in rows:
        print(f"{name:<{width}}  {ours:>8}  {bare:>8}  {ratio:>7}  {goal}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{started:%Y-%m-%dT%H%M%SZ}{'-quick' if args.quick else ''}.json"
    record = {
        "started": started.isoformat(),
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "figures": json.loads(json.dumps(found, default=lambda o: o.__dict__)),
        "table": rows,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
