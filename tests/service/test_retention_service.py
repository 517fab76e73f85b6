"""Scheduled retention through the orders app: the job it keeps in the (fake) scheduler, the
trigger the sidecar sends, and what GET /retention says."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from control import instances, jobs, retention
from control.retention import ensure_scheduled, schedule_soon
from orders.app import create_app
from orders.readmodel import OrderRecord, RecordStatus, load, save
from plumbing.settings import ServiceSettings
from tests.fakes import fake_gateway
from tests.service.conftest import AppFactory

TOKEN = "sidecar-to-app-token-0123456789abcdef"
SETTINGS = ServiceSettings(app_id="orders", app_api_token=TOKEN, retention_age=timedelta(days=1))
OLD = datetime.now(UTC) - timedelta(days=3)
SCHEDULED = {"older_than": "86400s", "dry_run": False}


@pytest.fixture
def ops(client: AppFactory) -> TestClient:
    return client(create_app, SETTINGS, who="viewer")


def trigger(ops: TestClient, token: str = TOKEN, data: Any = None) -> Any:
    """The sidecar's trigger, with the job's data as these settings schedule it unless told."""
    sent = SCHEDULED if data is None else data
    return ops.post("/job/retention", json=sent, headers={"dapr-api-token": token})


def finished(gateway: Any, order_id: str, at: datetime, status: str = "COMPLETED") -> None:
    iid = f"order-{order_id}"
    gateway.workflows.add(iid, status, name="order_workflow")
    instances.track(gateway.state, iid, "order_workflow", status, at)
    save(gateway.state, OrderRecord(order_id=order_id, status=RecordStatus.COMPLETED))


def settled(gateway: Any, job_id: str) -> dict[str, Any]:
    for _ in range(200):
        job = jobs.load(gateway.state, job_id)
        if job and job["status"] == "done":
            return job
        time.sleep(0.01)
    raise AssertionError(f"{job_id} did not finish")


def test_the_app_schedules_its_retention_job_at_start_up(ops: TestClient, gateway: Any) -> None:
    for _ in range(200):  # in the background, so that a scheduler that is down holds up nothing
        if "retention" in gateway.scheduler.jobs:
            break
        time.sleep(0.01)
    assert gateway.scheduler.jobs["retention"] == {
        "schedule": "0 30 3 * * 0",
        "data": {"older_than": "86400s", "dry_run": False},
    }


def test_a_restart_leaves_the_job_alone_and_changed_settings_replace_it() -> None:
    gateway = fake_gateway()
    said = ensure_scheduled(gateway, SETTINGS)
    assert said == (
        "retention: scheduled '0 30 3 * * 0': purge finished instances older than 86400s"
    )
    assert gateway.scheduler.calls == [("schedule", "retention")]
    assert ensure_scheduled(gateway, SETTINGS).startswith("retention: scheduled already")
    assert gateway.scheduler.calls == [("schedule", "retention")]  # the next run stays put
    hourly = dataclasses.replace(SETTINGS, retention_schedule="@every 1h")
    ensure_scheduled(gateway, hourly)
    assert gateway.scheduler.jobs["retention"]["schedule"] == "@every 3600s"
    off = dataclasses.replace(SETTINGS, retention_schedule="off")
    assert ensure_scheduled(gateway, off) == "retention: off (RETENTION_SCHEDULE=off)"
    assert "retention" not in gateway.scheduler.jobs


def test_a_trigger_purges_what_finished_before_the_age_and_keeps_the_orders(
    ops: TestClient, gateway: Any
) -> None:
    finished(gateway, "old", OLD)
    finished(gateway, "new", datetime.now(UTC))
    gateway.workflows.add("order-live", "RUNNING", name="order_workflow")
    instances.track(gateway.state, "order-live", "order_workflow", "RUNNING", OLD)
    resp = trigger(ops)
    assert resp.status_code == 200 and resp.json()["status"] == "started"
    job = settled(gateway, resp.json()["job_id"])
    assert job["results"] == {"order-old": "purged"} and job["actor"] == "retention"
    assert set(gateway.workflows.instances) == {"order-new", "order-live"}
    kept = load(gateway.state, "old")
    assert kept is not None and kept.status is RecordStatus.COMPLETED  # the business record
    records = ops.get("/audit", params={"actor": "retention"}).json()
    assert [r["action"] for r in records] == ["retention_run", "job_finished"]
    assert "older_than=86400s, dry_run=False" in records[0]["reason"]
    shown = ops.get("/retention").json()
    assert shown["enabled"] and shown["in_step"] and shown["older_than"] == "86400s"
    assert shown["last_run"]["job_id"] == job["job_id"]
    assert shown["last_run"]["counts"] == {"purged": 1} and shown["last_run"]["status"] == "done"
    nxt = datetime.fromisoformat(shown["next_run"])
    assert nxt.weekday() == 6 and (nxt.hour, nxt.minute) == (3, 30)  # Sunday 03:30 UTC


def test_a_dry_run_purges_nothing_and_says_what_it_would(client: AppFactory, gateway: Any) -> None:
    ops = client(create_app, dataclasses.replace(SETTINGS, retention_dry_run=True), who="viewer")
    finished(gateway, "old", OLD)
    dry = SCHEDULED | {"dry_run": True}
    job = settled(gateway, trigger(ops, data=dry).json()["job_id"])
    assert job["results"] == {"order-old": "would purge"} and job["dry_run"] is True
    assert "order-old" in gateway.workflows.instances
    assert ops.get("/retention").json()["last_run"]["counts"] == {"would purge": 1}


def test_a_trigger_while_the_last_run_goes_on_is_skipped(ops: TestClient, gateway: Any) -> None:
    gateway.state.put("retention:last", {"job_id": "job-000000000001", "at": "x"})
    gateway.state.put("job:job-000000000001", {"job_id": "job-000000000001", "status": "running"})
    resp = trigger(ops)
    assert resp.json() == {"status": "skipped", "reason": "job-000000000001 is still running"}
    assert not [k for k in gateway.state.data if k.startswith("job:") and "0001" not in k]


def test_a_trigger_while_retention_is_off_purges_nothing(client: AppFactory, gateway: Any) -> None:
    off = dataclasses.replace(SETTINGS, retention_schedule="off")
    ops = client(create_app, off, who="viewer")
    finished(gateway, "old", OLD)
    resp = trigger(ops)
    assert resp.status_code == 200
    assert resp.json() == {
        "status": "skipped",
        "reason": "retention is off here (RETENTION_SCHEDULE=off)",
    }
    assert "order-old" in gateway.workflows.instances
    assert gateway.state.get("retention:last") == (None, None)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"older_than": "1s", "dry_run": False}, "has {'older_than': '1s'}"),
        ({"older_than": "86400s"}, "has {'dry_run': None}"),  # a dry run would run for real
        ({}, "has {'older_than': None, 'dry_run': None}"),
        ([1], "is not a JSON object"),
    ],
)
def test_a_trigger_whose_data_is_not_what_the_settings_want_is_skipped(
    ops: TestClient, gateway: Any, data: Any, says: str
) -> None:
    finished(gateway, "old", OLD)
    resp = trigger(ops, data=data)
    assert resp.status_code == 200 and resp.json()["status"] == "skipped"
    assert says in resp.json()["reason"] and "want {'older_than': '86400s'" in resp.json()["reason"]
    assert "order-old" in gateway.workflows.instances
    assert gateway.state.get("retention:last") == (None, None)


def test_extra_keys_in_the_job_s_data_do_not_stop_a_run(ops: TestClient, gateway: Any) -> None:
    resp = trigger(ops, data=SCHEDULED | {"probe": "x"})
    assert resp.json()["status"] == "started"


def test_a_scheduler_that_is_down_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = fake_gateway()
    gateway.scheduler.down = 2
    monkeypatch.setattr(retention, "ATTEMPTS", (0.0, 0.0, 0.0))  # no waiting between tries
    schedule_soon(gateway, SETTINGS).join(timeout=10)
    assert gateway.scheduler.jobs["retention"]["schedule"] == "0 30 3 * * 0"


def test_only_the_sidecar_may_trigger_it(ops: TestClient, gateway: Any) -> None:
    finished(gateway, "old", OLD)
    assert trigger(ops, token="wrong").status_code == 401
    assert ops.post("/job/retention", json={}).status_code == 401
    assert "order-old" in gateway.workflows.instances
