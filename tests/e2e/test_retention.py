"""Scheduled retention on the real runtime, on a stack of its own whose schedule is short
(`@every 2s`, finished for longer than 1 s): the scheduler fires the job, the app purges, the
order's record stays. Once per schedule with two replicas is in test_replicas.py, on the
stack that runs two of each app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.flow import Flow
from tests.e2e.test_control_room import run_ctl
from tests.stack import E2E_ENV, WebhookSink, e2e_stack, eventually

pytestmark = pytest.mark.e2e

RETENTION_ENV = {**E2E_ENV, "RETENTION_SCHEDULE": "@every 2s", "RETENTION_AGE": "1s"}


@pytest.fixture(scope="module")
def retention_stack(
    tmp_path_factory: pytest.TempPathFactory, webhook: WebhookSink
) -> Iterator[Stack]:
    yield from e2e_stack(tmp_path_factory.mktemp("retention"), RETENTION_ENV, webhook)


@pytest.fixture
def flow(retention_stack: Stack, http: httpx.Client) -> Any:
    return Flow(retention_stack, http)


def test_finished_workflows_are_purged_on_schedule_and_the_orders_stay(flow: Flow) -> None:
    order = flow.place("42.00")
    eventually(
        lambda: (flow.order(order.order_id) or {}).get("status") == "completed",
        what="the order to complete",
    )
    iid = f"order-{order.order_id}"
    eventually(
        lambda: flow.http.get(f"{flow.orders}/workflows/{iid}").status_code == 404,
        timeout=60,
        what=f"{iid} to be purged by the scheduled retention",
    )
    kept = flow.order(order.order_id)
    assert kept is not None and kept["status"] == "completed" and kept["workflow"] is None
    assert kept["result"]["reason"] == "auto_approved"
    shown = flow.http.get(f"{flow.orders}/retention").json()
    assert shown["enabled"] and shown["in_step"] and shown["every"] == "2s"
    assert shown["age"] == "1 second"
    done = run_ctl(flow.stack, "viewer", "retention")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("orders: purge finished instances older than 1 second\n")
    assert "schedule: @every 2s (in step); next run: every 2s\nlast run: " in done.stdout
    assert shown["scheduled"] == {
        "schedule": "@every 2s",
        "data": {"older_than": "1s", "dry_run": False},
    }
    assert shown["last_run"]["job_id"].startswith("job-")
    runs = flow.http.get(
        f"{flow.orders}/audit", params={"actor": "retention", "action": "retention_run"}
    ).json()
    assert runs and all("older_than=1s, dry_run=False" in r["reason"] for r in runs)
    purged = [
        j
        for r in runs
        if (j := flow.http.get(f"{flow.orders}/workflows/jobs/{r['target']}").json())
        and j["results"].get(iid) == "purged"
    ]
    assert len(purged) == 1, "one run purged it; the later ones found it gone from the index"
