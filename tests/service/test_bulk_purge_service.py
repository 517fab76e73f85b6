"""A bulk purge through the orders app: many instances side by side, each purged once, and
what it reports is what Dapr (the fake) did."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from control import instances
from orders.app import create_app
from orders.readmodel import OrderRecord, RecordStatus, load, save
from plumbing.gateway import Transient
from plumbing.settings import ServiceSettings
from tests.fakes import FakeWorkflows
from tests.service.conftest import AppFactory

AGO = datetime.now(UTC) - timedelta(hours=1)


@dataclasses.dataclass
class SlowWorkflows(FakeWorkflows):
    """Purges take a moment, so that a job's workers overlap; `refuse` fails some of them."""

    refuse: set[str] = dataclasses.field(default_factory=set)

    def purge(self, instance_id: str, recursive: bool = True) -> bool:
        time.sleep(0.002)
        if instance_id in self.refuse:
            self.purges.append(instance_id)
            raise Transient(f"purge {instance_id}: the sidecar timed out")
        return super().purge(instance_id, recursive)


def finished(gateway: Any, order_id: str, status: str = "COMPLETED", record: Any = "completed"):
    """A finished order workflow the index knows, and its order record (None: no record)."""
    iid = f"order-{order_id}"
    gateway.workflows.add(iid, status, name="order_workflow")
    instances.track(gateway.state, iid, "order_workflow", status, AGO)
    if record is not None:
        save(gateway.state, OrderRecord(order_id=order_id, status=RecordStatus(record)))
    return iid


def purge_all(admin: TestClient) -> dict[str, Any]:
    job_id = admin.post("/workflows/jobs", json={"action": "purge"}).json()["job_id"]
    for _ in range(500):
        job = admin.get(f"/workflows/jobs/{job_id}").json()
        if job["status"] == "done":
            return job  # type: ignore[no-any-return]
        time.sleep(0.01)
    raise AssertionError(f"{job_id} did not finish")


def test_each_finished_instance_is_purged_once_however_many_go_side_by_side(
    client: AppFactory, gateway: Any
) -> None:
    gateway.workflows = SlowWorkflows()
    done = [finished(gateway, f"many-{n}") for n in range(150)]  # three chunks
    # Not kept yet: read, kept, then purged.
    stopped = finished(gateway, "stopped", "TERMINATED", record="awaiting_approval")
    admin = client(create_app, ServiceSettings(app_id="orders"), who="admin")
    job = purge_all(admin)
    assert job["results"] == dict.fromkeys([*done, stopped], "purged")
    assert Counter(gateway.workflows.purges) == Counter(dict.fromkeys([*done, stopped], 1))
    assert gateway.workflows.instances == {} and instances.entries(gateway.state) == []
    assert load(gateway.state, "many-7").status is RecordStatus.COMPLETED
    assert load(gateway.state, "stopped").status is RecordStatus.TERMINATED


def test_a_purge_that_fails_is_reported_failed_and_its_instance_stays(
    client: AppFactory, gateway: Any
) -> None:
    gateway.workflows = SlowWorkflows()
    targets = [finished(gateway, f"flaky-{n}") for n in range(70)]
    gateway.workflows.refuse = set(targets[::10])
    admin = client(create_app, ServiceSettings(app_id="orders"), who="admin")
    job = purge_all(admin)
    failed = {i for i, r in job["results"].items() if r.startswith("failed: purge")}
    assert failed == gateway.workflows.refuse
    assert {i for i, r in job["results"].items() if r == "purged"} == set(targets) - failed
    assert set(gateway.workflows.instances) == failed
    assert {e.instance_id for e in instances.entries(gateway.state)} == failed
    audited = admin.get("/audit", params={"target": job["job_id"]}).json()
    assert audited[-1]["outcome"] == "failed: 7"


def test_what_dapr_will_not_purge_is_reported_as_it_is_never_as_purged(
    client: AppFactory, gateway: Any
) -> None:
    """The index and the order records say finished, so no read comes before the purge: Dapr's
    refusal, or its not knowing the instance, is what the job reports."""
    gateway.workflows = SlowWorkflows()
    running = finished(gateway, "again")
    gateway.workflows.add(running, "RUNNING", name="order_workflow")  # running again
    vanished = finished(gateway, "vanished")
    del gateway.workflows.instances[vanished]
    purged = finished(gateway, "plain")
    admin = client(create_app, ServiceSettings(app_id="orders"), who="admin")
    job = purge_all(admin)
    assert job["results"] == {running: "skipped: RUNNING", vanished: "gone", purged: "purged"}
    assert list(gateway.workflows.instances) == [running]
