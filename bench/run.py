"""The benchmark: issue 13's six figures, each beside its bare-Dapr baseline on the same stack.

    uv run python bench/run.py [--quick] [--orders 300] [--rounds 2] [--replicas 2]

Starts the three apps, a bare Dapr app (bench/baseline_app.py: the SDK and nothing of ours)
and an app with one subscription through our helper (bench/ours_app.py), each under its own
sidecar, sharing redis, sentry, placement and scheduler. Then, after a warm-up that is not
counted, with rounds alternating between ours and bare:

  M1  auto-approved orders per second, published to `orders` in a burst, against a bare
      subscription that schedules a workflow of 5 no-op activities;
  M2  CPU seconds per order in that burst: every process of the side (apps, sidecars) and the
      shared ones (redis, sentry, placement, scheduler), from /proc;
  M3  decision POST -> order COMPLETED, p50/p95/p99, decisions posted at a fixed rate (half of
      our decision path's saturation, found with a burst of decisions; open loop) against the
      same hops done bare (publish, raise, an activity that publishes, raise, the activities
      our order ran after an approval before the lean release);
  M4  memory held per 1,000 orders waiting for a manager (RSS of the side's apps and sidecars
      and of the shared processes, plus Redis's used memory), against bare workflows that wait
      the same way (two per order, each on an event and a timer), and where it is held (apps,
      sidecars, scheduler, placement, sentry, Redis). Each side first starts a smaller wave of
      its own that is not counted, so neither pays alone for what every process allocates
      once (RSS never shrinks);
  M5  purging finished instances: our bulk job against a bare sequential purge loop;
  M6  one delivery through our subscription helper against a bare subscriber: latency one by
      one, and throughput in a burst.

With --replicas N, M1 is measured again afterwards on a second stack running N replicas of
each app, ours and bare alike ("M1 with N replicas"; the other figures run once, on one
replica). Prints a table and writes bench/results/<date>.json. Numbers are for this machine
and this run, with whatever else it was doing; they are not assertions.
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

from bench.figures import ADMIN, BARE, OURS, Bench, wf_client  # noqa: E402
from bench.report import show, table  # noqa: E402
from devstack.stack import Stack  # noqa: E402

EXTRA_APPS = {
    # app id: (command, topics it publishes to and subscribes to)
    "baseline": ("baseline_app.py", "bench,bench-orders,bench-decisions,bench-outcomes"),
    "benchours": ("ours_app.py", "bench-ours"),
}
GOALS = {"M1": 1.0, "M2": 1.3, "M3 p50": 1.5, "M3 p99": 3.0, "M4": 1.2, "M5": 2.0, "M6": 1.2}
COUNTS = {  # option: (a full run's, --quick's)
    "orders": (300, 40),
    "decisions": (60, 10),
    "waiting": (500, 40),
    "deliveries": (300, 40),
    "rounds": (2, 1),
}


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


def mean(results: list[Any]) -> Any:
    """The mean over rounds of each number in these (nested) dicts."""
    if isinstance(results[0], dict):
        return {key: mean([r[key] for r in results]) for key in results[0]}
    return sum(results) / len(results)


def figures(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    say = print
    say("warm-up (not counted)")
    for side in ("ours", "bare"):
        bench.burst(side, 20)
        bench.deliveries(side, 20, 5)
    warm = max(10, args.waiting // 5)
    say(f"M4: {warm} waiting orders a side (not counted), then {args.waiting} a side and round")
    for side in ("ours", "bare"):
        bench.start_waiting(side, warm)
    m4 = alternate(args.rounds, lambda side: bench.waiting(side, args.waiting))
    say(f"M1/M2: bursts of {args.orders} auto-approved orders, {args.rounds} rounds")
    m1 = alternate(args.rounds, lambda side: bench.burst(side, args.orders))
    # M3's rate: half the saturation of the decision path itself (ours), found with a burst of
    # decisions, not assumed from M1's cheaper auto-approved orders.
    pending = {side: bench.pending_orders(side, args.decisions * args.rounds) for side in m1}
    say(f"M3: saturation of our decision path, {args.decisions} decisions at once")
    saturation = bench.decision_saturation("ours", bench.pending_orders("ours", args.decisions))
    rate = saturation / 2
    say(f"M3: {args.decisions} decisions at {rate:.1f}/s (half of that saturation), each side")
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
        "M3 saturation": saturation,
        "M4": {s: mean(m4[s]) for s in m4},  # rounds alternate who goes first: the mean
        "M4 rounds": m4,
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


def replicated_m1(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """M1 (and M2) again, on a stack with `args.replicas` replicas of each app."""
    print(f"M1 with {args.replicas} replicas: warm-up (not counted), then {args.rounds} rounds")
    with stack, httpx.Client(timeout=60) as http:
        bench = Bench(stack, http)
        for side in ("ours", "bare"):
            bench.burst(side, 20)
        m1 = alternate(args.rounds, lambda side: bench.burst(side, args.orders))
    return {s: best(m1[s], "throughput") for s in m1} | {
        "cpu_per_order": {s: best(m1[s], "cpu_per_order", low=True) for s in m1},
        "replicas": args.replicas,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small counts, one round (< 1 min); options win"
    )
    for option, what in [
        ("orders", "M1: orders per burst"),
        ("decisions", "M3: decisions per round"),
        ("waiting", "M4: waiting orders per side and round"),
        ("deliveries", "M6: messages per burst"),
        ("rounds", "rounds per figure, alternated"),
    ]:
        full, quick = COUNTS[option]
        parser.add_argument(
            f"--{option}", type=int, help=f"{what} (default {full}; with --quick {quick})"
        )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        metavar="N",
        help="then M1 again with N replicas of each app, ours and bare (default 1: not again)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--run-dir",
        type=Path,
        help="keep the stack's logs and data here (default: a temporary dir)",
    )
    args = parser.parse_args()
    for option, (full, quick) in COUNTS.items():
        if getattr(args, option) is None:
            setattr(args, option, quick if args.quick else full)
    if args.replicas < 1:
        parser.error("--replicas: one or more")
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or Path(tmp) / "run"

        def stack(replicas: int) -> Stack:
            return Stack(
                run_file=run_file(Path(tmp)),
                run_dir=run_dir if replicas == 1 else run_dir / f"replicas-{replicas}",
                free_ports=True,
                component_metadata=scopes_with_bench_apps(),
                also_scope=tuple(EXTRA_APPS),
                replicas=dict.fromkeys((*OURS, *BARE), replicas),
            )

        with stack(1) as one, httpx.Client(timeout=60) as http:
            found = figures(Bench(one, http), args)
        if args.replicas > 1:
            found[f"M1 with {args.replicas} replicas"] = replicated_m1(stack(args.replicas), args)
    rows = table(found)
    show(rows, found)
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
