"""The six figures of issue 13, each as ours and bare, on one stack (bench/run.py starts it).

"Ours" goes in as a shop and an approver would (topics and HTTP); "bare" is
bench/baseline_app.py, the SDK's own calls doing the same Dapr work. Both are timed the same
way: sends from here, completions from Dapr's own records of the workflow instances.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from dapr.conf import settings
from dapr.ext.workflow import DaprWorkflowClient

from bench import measure
from contracts.envelope import CONTENT_TYPE, wrap
from contracts.messages import OrderPlaced
from contracts.topics import ORDER_STATUS
from devstack.stack import Stack
from tests import resp

ADMIN = {"Authorization": "Bearer dev-admin-ada"}
BOB = {"Authorization": "Bearer dev-manager-bob"}
SHARED = ("redis", "placement", "scheduler", "sentry", "postgres")
OURS = ("orders", "approvals", "notifier")
BARE = ("baseline",)


def wf_client(stack: Stack, app: str) -> DaprWorkflowClient:
    # The SDK reads the sidecar's API token from its global settings when the client is built.
    settings.DAPR_API_TOKEN = stack.apps[app].dapr_api_token
    return DaprWorkflowClient(host="127.0.0.1", port=str(stack.apps[app].grpc_port))


def pids(stack: Stack, apps: tuple[str, ...], shared: bool = True) -> list[int]:
    """The processes of these apps (every replica, with its sidecar), and the shared ones."""
    names = replicas(stack, apps)
    return named(stack, [*names, *(f"{n}-daprd" for n in names), *(SHARED if shared else ())])


def replicas(stack: Stack, apps: tuple[str, ...]) -> list[str]:
    """The process names of these apps' replicas (`orders`, or `orders-1`, `orders-2`)."""
    return [name for app in apps for name in stack.replica_names(app)]


def named(stack: Stack, names: list[str]) -> list[int]:
    return [p.pid for p in stack.procs if p.name in names and p.pid]


def order(oid: str, amount: str) -> bytes:
    placed = OrderPlaced(
        order_id=oid,
        customer_id="bench",
        amount=amount,
        currency="EUR",
        placed_at=datetime.now(UTC),
    )
    return wrap(placed, "bench")


@dataclass
class Bench:
    stack: Stack
    http: httpx.Client

    def publish(self, via: str, topic: str, body: bytes) -> None:
        app = self.stack.apps[via]
        resp = self.http.post(
            f"{app.dapr_url}/v1.0/publish/pubsub/{topic}",
            content=body,
            headers={"content-type": CONTENT_TYPE, **app.dapr_headers},
        )
        resp.raise_for_status()

    # M1 and M2: auto-approved orders in a burst, and the CPU they cost.

    def burst(self, side: str, n: int) -> dict[str, Any]:
        run = uuid.uuid4().hex[:6]
        ids = [f"m1{run}{i:05d}" for i in range(n)]
        bodies = {oid: order(oid, "120.00") for oid in ids}
        if side == "ours":
            watched = pids(self.stack, OURS)
            instances = {oid: f"order-{oid}" for oid in ids}

            def send(oid: str) -> None:
                self.publish("orders", "orders", bodies[oid])

            client = wf_client(self.stack, "orders")
        else:
            watched = pids(self.stack, BARE)
            instances = {oid: f"bare-{oid}" for oid in ids}

            def send(oid: str) -> None:
                self.publish("baseline", "bench-orders", bodies[oid])

            client = wf_client(self.stack, "baseline")
        cpu = measure.cpu_seconds(watched)
        sent = measure.open_loop(ids, None, send)
        ended = measure.completions(client, instances)
        if side == "ours":
            # The notifier tells the customer of each status after the workflow ended: that is
            # part of an order's cost, and left running it would load the bare side's round.
            self.drained(ORDER_STATUS)
        cpu = measure.cpu_seconds(watched) - cpu
        return {
            "throughput": measure.throughput(sent, ended),
            "cpu_per_order": cpu / n,
            "latency": measure.Spread.of(measure.latencies(sent, ended)),
        }

    def drained(self, topic: str, timeout: float = 300) -> None:
        """Wait until every subscriber of `topic` has taken and answered all its messages."""
        redis = (self.stack.redis_port, self.stack.own_secrets.redis_password)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            groups = [
                dict(zip(g[::2], g[1::2], strict=True))
                for g in resp.command(*redis, "XINFO", "GROUPS", topic)
            ]
            if all(g.get("pending") == 0 and g.get("lag") in (0, None) for g in groups):
                return
            time.sleep(0.1)
        raise TimeoutError(f"the subscribers of {topic} did not catch up in {timeout:.0f} s")

    # M3: decision -> order completed, decisions posted at a fixed rate.

    def pending_orders(self, side: str, n: int) -> list[str]:
        run = uuid.uuid4().hex[:6]
        ids = [f"m3{run}{i:05d}" for i in range(n)]
        if side == "ours":
            approvals = self.stack.apps["approvals"].app_url
            for oid in ids:
                self.publish("orders", "orders", order(oid, "1200.00"))
            for oid in ids:
                measure.arrivals(lambda o: self._pending(approvals, o), [oid])
        else:
            base = self.stack.apps["baseline"].app_url
            for oid in ids:
                self.http.post(f"{base}/pending/{oid}").raise_for_status()
            client = wf_client(self.stack, "baseline")
            for oid in ids:
                client.wait_for_workflow_start(f"bare-approval-{oid}", timeout_in_seconds=60)
        return ids

    def _pending(self, approvals: str, oid: str) -> float | None:
        view = self.http.get(f"{approvals}/approvals/{oid}", headers=ADMIN)
        return 1.0 if view.status_code == 200 and view.json()["status"] == "pending" else None

    def decisions(self, side: str, ids: list[str], rate: float) -> measure.Spread:
        sent, ended = self._decide(side, ids, rate)
        return measure.Spread.of(measure.latencies(sent, ended))

    def decision_saturation(self, side: str, ids: list[str]) -> float:
        """Decisions to COMPLETED orders per second when all are posted at once."""
        return measure.throughput(*self._decide(side, ids, None))

    def _decide(
        self, side: str, ids: list[str], rate: float | None
    ) -> tuple[dict[str, float], dict[str, float]]:
        if side == "ours":
            approvals = self.stack.apps["approvals"].app_url
            client = wf_client(self.stack, "orders")
            instances = {oid: f"order-{oid}" for oid in ids}

            def send(oid: str) -> None:
                self.http.post(
                    f"{approvals}/approvals/{oid}/decisions", headers=BOB, json={"approved": True}
                ).raise_for_status()
        else:
            base = self.stack.apps["baseline"].app_url
            client = wf_client(self.stack, "baseline")
            instances = {oid: f"bare-decided-{oid}" for oid in ids}

            def send(oid: str) -> None:
                self.http.post(f"{base}/decide/{oid}").raise_for_status()

        sent = measure.open_loop(ids, rate, send)
        return sent, measure.completions(client, instances)

    # M4: memory held by orders waiting for a manager.

    def waiting(self, side: str, n: int) -> dict[str, Any]:
        """MiB that n more orders waiting for a manager hold, per 1,000, by where: the side's
        apps and sidecars, the shared control plane, and the data Redis holds (its used
        memory: its RSS, which holds that data too, is recorded but not added)."""
        before = self.memory(side)
        self.start_waiting(side, n)
        after = self.memory(side)
        held = {part: (after[part] - before[part]) * 1000 / n for part in after}
        return {
            "all_mib_per_1000": sum(v for part, v in held.items() if part != "redis rss"),
            "apps_mib_per_1000": held["apps"],
            "held_per_1000": held,
        }

    def memory(self, side: str) -> dict[str, float]:
        apps = replicas(self.stack, OURS if side == "ours" else BARE)
        parts = {
            "apps": apps,
            "sidecars": [f"{a}-daprd" for a in apps],
            **{name: [name] for name in SHARED if name != "redis"},
        }
        mib = {part: measure.rss_mib(named(self.stack, names)) for part, names in parts.items()}
        redis = (self.stack.redis_port, self.stack.own_secrets.redis_password)
        return mib | {
            "redis used": measure.redis_used_mib(*redis),
            "redis rss": measure.rss_mib(named(self.stack, ["redis"])),
        }

    def start_waiting(self, side: str, n: int) -> None:
        """n orders waiting for a manager: ours as a shop places them, bare as two waiting
        workflows each (an event or a timer), started and running."""
        if side == "ours":
            self.pending_orders("ours", n)
            return
        base = self.stack.apps["baseline"].app_url
        run = uuid.uuid4().hex[:6]
        client = wf_client(self.stack, "baseline")
        for i in range(n):
            self.http.post(f"{base}/waiting/m4{run}{i:05d}").raise_for_status()
        for i in range(n):
            for part in ("a", "b"):
                client.wait_for_workflow_start(
                    f"bare-wait-m4{run}{i:05d}-{part}", timeout_in_seconds=60
                )

    # M6: one delivery through our subscription helper, or a bare subscriber.

    def deliveries(self, side: str, n: int, sequential: int) -> dict[str, Any]:
        app, topic = ("benchours", "bench-ours") if side == "ours" else ("baseline", "bench")
        url = self.stack.apps[app].app_url

        def read(oid: str) -> float | None:
            return self.http.get(f"{url}/arrival/{oid}").json()["at"]  # type: ignore[no-any-return]

        run = uuid.uuid4().hex[:6]
        one_by_one = []
        for i in range(sequential):
            oid = f"m6{run}s{i:04d}"
            sent = measure.open_loop(
                [oid], None, lambda o: self.publish(app, topic, order(o, "1.00"))
            )
            one_by_one += measure.latencies(sent, measure.arrivals(read, [oid]))
        ids = [f"m6{run}b{i:05d}" for i in range(n)]
        bodies = {oid: order(oid, "1.00") for oid in ids}
        sent = measure.open_loop(ids, None, lambda o: self.publish(app, topic, bodies[o]))
        got = measure.arrivals(read, ids)
        return {
            "latency": measure.Spread.of(one_by_one),
            "throughput": measure.throughput(sent, got),
        }
