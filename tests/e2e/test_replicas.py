"""Two replicas of every app (issue 9, part 2): each its own app process and sidecar with the
same app id. A workflow goes on when the replica hosting it dies (its actor moves to the
survivor), and each message is handled by one replica (the app's consumer group)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests import resp
from tests.e2e.flow import Flow, log_lines
from tests.e2e.test_readme_tour import STUMBLES, readdress
from tests.stack import E2E_ENV, ROOT, WebhookSink, e2e_stack, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory, webhook: WebhookSink) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("replicas") / ".run"  # as `make run` has it
    # Dry runs: the retention test's job carries the data these settings want, and purges nothing.
    yield from e2e_stack(run_dir, {**E2E_ENV, "RETENTION_DRY_RUN": "true"}, webhook, replicas=2)


@pytest.fixture
def flow(replicated: Stack, http: httpx.Client) -> Any:
    return Flow(replicated, http)


def host_of(stack: Stack, app: str, instance: str) -> str | None:
    """The replica whose worker ran `instance` last: the one whose sidecar hosts its actor
    (the SDK logs `<instance>: Orchestrator yielded ...` for each step it runs)."""
    latest: tuple[str, str] | None = None
    for name in stack.replica_names(app):
        for at, message in log_lines(stack.log_of(name).read_text(errors="replace")):
            if f"{instance}: Orchestrator" in message and (latest is None or at > latest[0]):
                latest = (at, name)
    return latest[1] if latest else None


def kill_replica(stack: Stack, name: str) -> None:
    """SIGKILL a replica's app and its sidecar; nothing starts them again until restart()."""
    for proc in stack.procs:
        if proc.name in (name, f"{name}-daprd"):
            proc.crash()


def test_the_stack_runs_each_app_twice_under_one_app_id(replicated: Stack) -> None:
    names = set(replicated.supervisor.watches)
    for app in ("orders", "approvals", "notifier"):
        assert {f"{app}-1", f"{app}-1-daprd", f"{app}-2", f"{app}-2-daprd"} <= names
        first, second = replicated.app_replicas[app]
        assert replicated.apps[app] == first and first.app_port != second.app_port
        assert first.dapr_api_token == second.dapr_api_token  # one identity, like one Deployment
    assert "sentry" in names


def test_a_workflow_goes_on_when_the_replica_hosting_it_dies(flow: Flow, replicated: Stack) -> None:
    """Both workflows of an order (its order_workflow, its approval_workflow) wait on replicas
    that are then killed, app and sidecar; the approval is decided and the order completes on
    the survivors while the hosts stay dead."""
    orders = [flow.place("1200.00") for _ in range(4)]
    for order in orders:
        flow.pending(order.order_id)
    hosts = {
        o.order_id: (
            eventually(lambda o=o: host_of(replicated, "orders", f"order-{o.order_id}")),
            eventually(lambda o=o: host_of(replicated, "approvals", f"approval-{o.order_id}")),
        )
        for o in orders
    }
    order = orders[0]
    order_host, approval_host = hosts[order.order_id]
    killed = time.monotonic()
    kill_replica(replicated, order_host)
    kill_replica(replicated, approval_host)
    try:
        eventually(
            lambda: flow.decide(order.order_id, "manager").status_code == 202,
            what="a surviving approvals replica to take the decision",
        )
        done = flow.finished(order.order_id, timeout=60)
        took = time.monotonic() - killed
        print(f"\n{order.order_id}: completed {took:.1f}s after its hosts were killed")
        assert done["result"]["decided_by"] == "bob"
        survivors = (
            next(n for n in replicated.replica_names("orders") if n != order_host),
            next(n for n in replicated.replica_names("approvals") if n != approval_host),
        )
        assert host_of(replicated, "orders", f"order-{order.order_id}") == survivors[0]
        assert host_of(replicated, "approvals", f"approval-{order.order_id}") == survivors[1]
        for other in orders[1:]:  # the rest, wherever they waited, go on too
            assert flow.decide(other.order_id, "vp").status_code == 202
            assert flow.finished(other.order_id, timeout=60)["result"]["decided_by"] == "val"
    finally:
        for name in (order_host, approval_host):
            for proc in (f"{name}-daprd", name):
                replicated.restart(proc, crash=False)


def test_each_message_is_handled_by_one_replica(flow: Flow, replicated: Stack) -> None:
    """A burst of orders, published through both orders sidecars in turn: each is answered by
    exactly one orders replica, both replicas take a share, and so for the notifier's
    deliveries of the status changes."""
    burst = [flow.place("60.00") for _ in range(30)]
    for order in burst:
        flow.finished(order.order_id, timeout=60)
    ids = {o.order_id for o in burst}
    taken = [(replica, event) for replica, event, _ in flow.answers("orders", "orders")]
    per_event = Counter(event for _, event in taken if event in ids)
    assert per_event == Counter(dict.fromkeys(ids, 1)), per_event
    shares = Counter(replica for replica, event in taken if event in ids)
    assert set(shares) == {"orders-1", "orders-2"}, shares
    completed = {f"{i}-completed" for i in ids}

    def told() -> Counter[str] | None:
        answers = flow.answers("notifier", "order-status")
        got = Counter(event for _, event, _ in answers if event in completed)
        return got if len(got) == len(completed) else None

    assert set(eventually(told, what="the notifier to answer every completion").values()) == {1}
    print(f"\norders taken per replica: {dict(shares)}")


def test_the_replicas_of_an_app_read_as_one_consumer_of_its_group(replicated: Stack) -> None:
    """Dapr's Redis pub/sub names the consumer as it names the group: the app id
    (components-contrib v1.18.3 pubsub/redis: XREADGROUP GROUP <consumerID> <consumerID>). So
    both replicas read as the one consumer `orders`. Harmless here: a new entry goes to one
    reader whatever the name, and the reclaim of a message a dead replica took reads the whole
    group's pending list and claims with a minimum idle time, so one replica claims it
    (docs/operations.md, "Replicas")."""
    port, password = replicated.redis_port, replicated.own_secrets.redis_password
    for topic, group in (("orders", "orders"), ("order-status", "notifier")):
        consumers = resp.command(port, password, "XINFO", "CONSUMERS", topic, group)
        names = [dict(zip(c[::2], c[1::2], strict=True))["name"] for c in consumers]
        assert names == [group], names


def test_the_readme_replicas_section_works_as_pasted(flow: Flow, replicated: Stack) -> None:
    """README, "Two of each": against this stack, supervised as `make run REPLICAS=2` has it."""
    section = (ROOT / "README.md").read_text().split("## Two of each", 1)[1].split("\n## ")[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    (block,) = [b for b in blocks if "make run" not in b]
    script = readdress(block, replicated)
    script = script.replace("uv run devstack", f"{sys.executable} -m devstack")
    script = script.replace("uv run approvals-ctl", f"{sys.executable} -m approvals_ctl")
    before = {n: replicated.supervisor.watch(n).restarts for n in ("orders-2", "orders-2-daprd")}
    replicated.supervise()
    env = {
        **os.environ,
        "ORDERS_URL": replicated.apps["orders"].app_url,
        "APPROVALS_URL": replicated.apps["approvals"].app_url,
    }
    env.pop("APPROVALS_TOKEN", None)
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        cwd=replicated.run_dir.parent,
        env=env,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    stumbles = [s for s in [*STUMBLES, "error:"] if s in output]
    assert not stumbles, f"it stumbles on {stumbles}:\n{output}"
    assert flow.finished("two-1")["status"] == "completed", output
    table = output.rsplit("NAME ", 1)[1].splitlines()
    restarts = {line.split()[0]: int(line.split()[3]) for line in table[1:] if line.strip()}
    assert {n: restarts[n] - before[n] for n in before} == dict.fromkeys(before, 1), output


def test_each_scheduled_retention_run_fires_in_one_replica(flow: Flow, replicated: Stack) -> None:
    """The retention job (control.retention), replaced through the orders sidecar's Jobs API
    by one that fires every second, six times, with the data this stack's settings want (a
    dry run of the default age) and a marker: the two replicas together are triggered six
    times, each tick once, never in both, and what ran was a dry run."""

    def ready(app_url: str) -> bool:
        try:
            return flow.http.get(f"{app_url}/readyz").status_code == 200
        except httpx.TransportError:  # still starting again: refused
            return False

    for replica in replicated.app_replicas["orders"]:  # an earlier test may restart one
        eventually(lambda r=replica: ready(r.app_url), what=f"{replica.name} to be ready")
    orders = replicated.apps["orders"]
    marker = uuid.uuid4().hex
    job = {
        "schedule": "@every 1s",
        "repeats": 6,
        "data": {"older_than": "7776000s", "dry_run": True, "probe": marker},
        "overwrite": True,
    }
    url = f"{orders.dapr_url}/v1.0/jobs/retention"
    made = flow.http.post(url, content=json.dumps(job), headers=orders.dapr_headers)
    assert made.status_code == 204, made.text
    eventually(
        lambda: flow.http.get(url, headers=orders.dapr_headers).status_code != 200,
        timeout=60,
        what="the job's six runs to be over (the scheduler then deletes it)",
    )

    def triggered(name: str) -> int:
        log = replicated.log_of(name).read_text(errors="replace").splitlines()
        return sum(
            1 for line in log if "retention: triggered by the scheduler" in line and marker in line
        )

    got = {name: triggered(name) for name in replicated.replica_names("orders")}
    assert sum(got.values()) == 6, f"triggers per replica: {got}"
    # The scheduler takes turns over the sidecars connected under an app id (round robin), so
    # both replicas had some: both were live, and still no tick fired twice.
    assert all(got.values()), f"triggers per replica: {got}"
    print(f"retention triggers per replica over six runs: {got}")
    # The data matched (a replica skips a trigger whose data its settings do not want), and
    # the runs were dry runs.
    skipped = [
        line
        for name in replicated.replica_names("orders")
        for line in replicated.log_of(name).read_text(errors="replace").splitlines()
        if "retention: this trigger is skipped" in line and "settings want" in line
    ]
    assert not skipped, skipped
    runs = flow.http.get(
        f"{flow.orders}/audit", params={"actor": "retention", "action": "retention_run"}
    ).json()
    assert runs and all("dry_run=True" in r["reason"] for r in runs), runs
