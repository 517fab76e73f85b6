"""The fault tier: a seeded workload of every path an order can take, driven while a nemesis
kills and hangs real processes, then checked: every order ends as expected, once, and nothing
is left pending (issue 9). It runs against one and two replicas of every app (FAULT_REPLICAS=N
runs only N). FAULT_SEED replays a run; FAULT_ORDERS sets its size (>= 100)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.flow import Flow
from tests.faults import checker
from tests.faults.nemesis import Nemesis
from tests.faults.workload import Driver, Plan
from tests.stack import E2E_ENV, WebhookSink, e2e_stack

pytestmark = pytest.mark.faults

# Deadlines the faults cannot push a decision past, yet short enough for the escalation and
# expiry paths to happen within the run. A decision posted in time but applied after the
# deadline loses to it (the timer fires first), so the VP's deadline must outlast the longest
# stall the nemesis can cause: a killed scheduler stops every workflow for about 27 s, and two
# scheduler kills can come 40 s apart (seed 453345366 on PostgreSQL expired ten orders whose
# VP had decided, with a VP deadline of 40 s).
FAULT_ENV = {
    **E2E_ENV,
    "POLICY_MANAGER_DEADLINE": "20s",
    "POLICY_VP_DEADLINE": "90s",
    "DECISION_HOLD": "180s",
}


REPLICAS = [int(n) for n in os.environ.get("FAULT_REPLICAS", "1,2").split(",")]


@pytest.fixture(
    scope="module", params=REPLICAS, ids=[f"{n}-replica{'s' * (n > 1)}" for n in REPLICAS]
)
def fault_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    webhook: WebhookSink,
) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp(f"faults-{request.param}")
    yield from e2e_stack(run_dir, FAULT_ENV, webhook, replicas=request.param, mail=False)


def test_every_order_ends_as_expected_once_while_processes_die(
    fault_stack: Stack, http: httpx.Client, webhook: WebhookSink, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = int(os.environ.get("FAULT_SEED") or random.randrange(1 << 30))
    count = max(100, int(os.environ.get("FAULT_ORDERS", "100")))
    replicas = max(len(r) for r in fault_stack.app_replicas.values())
    with capsys.disabled():  # the seed and recovery times belong in every CI log, pass or fail
        print(
            f"\nfault tier: FAULT_SEED={seed} ({count} orders, store {fault_stack.state_store}, "
            f"{replicas} replica(s) of each app)"
        )
    plan = Plan.make(seed, count, spread_s=40, tag=f"r{replicas}")
    flow = Flow(fault_stack, http)
    driver = Driver(flow)
    nemesis = Nemesis(fault_stack, seed)
    nemesis.start()
    try:
        driver.run(plan)
        time.sleep(45)  # faults go on while escalations and expiries come due
        nemesis.wait_for_every_kind(timeout=120)
    finally:
        nemesis.stop()
    assert not nemesis.errors, nemesis.errors
    assert {f.kind for f in nemesis.faults} == set(nemesis.kinds), report(nemesis, driver)
    deadline = time.monotonic() + 300  # then the checker says what did not settle, and why
    while checker.settled(flow, plan, webhook) and time.monotonic() < deadline:
        time.sleep(2)
    notifier_killed = any(f.target == "notifier" for f in nemesis.faults)
    found = checker.problems(flow, plan, webhook, notifier_killed)
    assert not found, f"seed {seed}:\n" + "\n".join(found) + "\n" + report(nemesis, driver)
    with capsys.disabled():
        print(recoveries(flow, plan, nemesis))


def report(nemesis: Nemesis, driver: Driver) -> str:
    faults = "\n".join(f"  {f}" for f in nemesis.faults)
    return f"faults:\n{faults}\ndriver (last 40):\n" + "\n".join(driver.log[-40:])


def recoveries(flow: Flow, plan: Plan, nemesis: Nemesis) -> str:
    """For each fault: from its start to the next order that completed (its record's time)."""
    ended: list[datetime] = []
    for o in plan.orders:
        record: dict[str, Any] = flow.order(o.order_id) or {}
        if record.get("status") == "completed" and record.get("updated_at"):
            ended.append(datetime.fromisoformat(record["updated_at"]))
    lines = []
    for f in nemesis.faults:
        after = [t for t in ended if t > f.began]
        took = f"{(min(after) - f.began).total_seconds():.1f}s" if after else "none after"
        lines.append(f"  {f.kind:15} {f.target:15} next completion {took}")
    return "recovery (fault -> next completed order):\n" + "\n".join(lines)
