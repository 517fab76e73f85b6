"""The management router through the orders app, with fakes at the gateway seam."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from control import instances, jobs
from orders.app import create_app
from plumbing.settings import ServiceSettings
from tests.fakes import bearer
from tests.service.conftest import AppFactory


@pytest.fixture
def ops(client: AppFactory) -> TestClient:
    return client(create_app, ServiceSettings(app_id="orders"), who="operator")


def order(order_id: str, amount: str = "1200.00") -> dict:
    return {
        "order_id": order_id,
        "customer_id": "c-1",
        "amount": amount,
        "currency": "EUR",
        "placed_at": "2026-11-23T10:00:00Z",
    }


def start(ops: TestClient, iid: str) -> dict:
    """Start order_workflow through the management API; `iid` is "order-<order id>"."""
    body = {
        "name": "order_workflow",
        "input": order(iid.removeprefix("order-")),
        "instance_id": iid,
    }
    return ops.post("/workflows", json=body)


def test_start_is_idempotent_and_audited(ops: TestClient, gateway) -> None:
    first = start(ops, "order-wf-1")
    assert first.status_code == 201 and first.json()["created"] is True
    again = start(ops, "order-wf-1")
    assert again.status_code == 200 and again.json() == {
        "instance_id": "order-wf-1",
        "created": False,
        "status": "RUNNING",
    }
    assert len(gateway.workflows.scheduled) == 1
    actions = [(e["action"], e["outcome"]) for e in ops.get("/audit").json()]
    assert actions == [("start_workflow", "ok"), ("start_workflow", "ok: exists")]


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({"name": "nope"}, 404, "unknown workflow 'nope'; this app hosts order_workflow"),
        ({"name": "order_workflow", "instance_id": "bad id"}, 422, "instance_id"),
        ({"input": 1}, 422, "name"),
    ],
)
def test_bad_start_requests_are_refused_and_audited(
    ops: TestClient, gateway, body, code, says
) -> None:
    resp = ops.post("/workflows", json=body)
    assert resp.status_code == code and says in resp.json()["detail"]
    assert not gateway.workflows.scheduled
    assert ops.get("/audit").json()[-1]["outcome"].startswith(f"refused {code}")


def test_unknown_and_malformed_ids(ops: TestClient) -> None:
    assert ops.get("/workflows/ghost").status_code == 404
    assert ops.get("/workflows/bad%20id").status_code == 422
    assert ops.post("/workflows/ghost/suspend", json={"reason": "x"}).status_code == 404
    assert ops.get("/workflows/ghost/wait", params={"timeout": 61}).status_code == 422


def test_a_reason_with_control_characters_is_a_clear_422(ops: TestClient, gateway) -> None:
    start(ops, "order-wf-9")
    for action in ("suspend", "terminate"):
        resp = ops.post(f"/workflows/order-wf-9/{action}", json={"reason": "because\x1b[2J"})
        assert resp.status_code == 422
        assert resp.json()["detail"].endswith("found U+001B (escape) at character 8")
    assert gateway.workflows.instances["order-wf-9"].status == "RUNNING"


def test_suspend_resume_terminate_purge(ops: TestClient, gateway) -> None:
    start(ops, "order-wf-2")
    refused = ops.delete("/workflows/order-wf-2")
    assert refused.status_code == 409
    assert (
        "RUNNING: only COMPLETED, FAILED or TERMINATED instances can be purged"
        in (refused.json()["detail"])
    )
    assert ops.post("/workflows/order-wf-2/suspend", json={"reason": "audit"}).json()["status"] == (
        "SUSPENDED"
    )
    assert ops.delete("/workflows/order-wf-2").status_code == 409
    assert ops.post("/workflows/order-wf-2/suspend", json={"reason": "x"}).status_code == 409
    assert ops.post("/workflows/order-wf-2/suspend", json={}).status_code == 422  # reason required
    assert (
        ops.post("/workflows/order-wf-2/resume", json={"reason": "ok"}).json()["status"]
        == "RUNNING"
    )
    forged = ops.post("/workflows/order-wf-2/events/approval_outcome", json={"x": 1})
    assert forged.status_code == 403 and "business decisions" in forged.json()["detail"]
    assert not gateway.workflows.raised
    assert ops.post("/workflows/order-wf-2/terminate", json={"reason": "stop"}).status_code == 200
    assert ops.delete("/workflows/order-wf-2").json() == {
        "instance_id": "order-wf-2",
        "status": "purged",
    }
    assert ops.get("/workflows/order-wf-2").status_code == 404
    assert [e["action"] for e in ops.get("/audit").json()] == [
        "start_workflow",
        "purge_workflow",
        "suspend_workflow",
        "purge_workflow",
        "suspend_workflow",
        "suspend_workflow",
        "resume_workflow",
        "raise_workflow_event",
        "terminate_workflow",
        "purge_workflow",
    ]


def test_list_filters_and_pages(ops: TestClient, gateway) -> None:
    for n in range(5):
        start(ops, f"order-wf-{n}")
    ops.post("/workflows/order-wf-3/terminate", json={"reason": "test"})
    listed = ops.get("/workflows", params={"status": "terminated"}).json()
    assert listed["total"] == 1 and listed["instances"][0]["instance_id"] == "order-wf-3"
    page = ops.get("/workflows", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 5 and len(page["instances"]) == 2
    assert ops.get("/workflows", params={"status": "sleepy"}).status_code == 422
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert ops.get("/workflows", params={"created_after": later}).json()["total"] == 0


def test_reconcile_adds_what_the_index_missed(ops: TestClient, gateway) -> None:
    gateway.workflows.add("made-elsewhere", "COMPLETED", name="order_workflow")
    assert ops.post("/workflows/reconcile").json()["added"] == 1
    assert [e.instance_id for e in instances.entries(gateway.state)] == ["made-elsewhere"]


def test_bulk_jobs_need_admin_and_report_progress(client: AppFactory, gateway) -> None:
    admin = client(create_app, ServiceSettings(app_id="orders"), who="admin")
    for n in range(30):
        start(admin, f"order-done-{n}")
        admin.post(f"/workflows/order-done-{n}/terminate", json={"reason": "test"})
    start(admin, "order-alive")
    job = {"action": "purge", "dry_run": True}
    assert admin.post("/workflows/jobs", json=job, headers=bearer("operator")).status_code == 403
    dry = wait_job(admin, admin.post("/workflows/jobs", json=job).json()["job_id"])
    assert dry["total"] == 30 and set(dry["results"].values()) == {"would purge"}
    assert len(gateway.workflows.instances) == 31
    real = wait_job(admin, admin.post("/workflows/jobs", json={"action": "purge"}).json()["job_id"])
    assert set(real["results"].values()) == {"purged"} and list(gateway.workflows.instances) == [
        "order-alive"
    ]
    stuck = admin.post("/workflows/jobs", json={"action": "terminate", "older_than": "-5s"})
    assert stuck.status_code == 422 and "older_than" in stuck.json()["detail"]


def test_purge_older_than_zero_is_every_finished_instance_and_terminate_refuses_it(
    client: AppFactory, gateway
) -> None:
    admin = client(create_app, ServiceSettings(app_id="orders"), who="admin")
    for n in range(3):
        start(admin, f"order-old-{n}")
        admin.post(f"/workflows/order-old-{n}/terminate", json={"reason": "test"})
    start(admin, "order-alive")
    for zero in ("0s", "PT0S", "0m"):
        job = admin.post(
            "/workflows/jobs", json={"action": "purge", "older_than": zero, "dry_run": True}
        )
        assert job.status_code == 202, job.text
        done = wait_job(admin, job.json()["job_id"])
        assert done["results"] == {f"order-old-{n}": "would purge" for n in range(3)}
    refused = admin.post("/workflows/jobs", json={"action": "terminate", "older_than": "0s"})
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("older_than: 0 is for purge only")
    assert gateway.workflows.instances["order-alive"].status == "RUNNING"


def test_a_job_limited_to_named_instances_touches_only_those_that_qualify(
    client: AppFactory, gateway
) -> None:
    admin = client(create_app, ServiceSettings(app_id="orders"), who="admin")
    for n in range(4):
        start(admin, f"order-named-{n}")
        if n < 3:
            admin.post(f"/workflows/order-named-{n}/terminate", json={"reason": "test"})
    named = ["order-named-0", "order-named-1", "order-named-3", "order-absent"]
    job = {"action": "purge", "instance_ids": named}
    done = wait_job(admin, admin.post("/workflows/jobs", json=job).json()["job_id"])
    assert done["instance_ids"] == named
    assert done["results"] == {"order-named-0": "purged", "order-named-1": "purged"}
    assert sorted(gateway.workflows.instances) == ["order-named-2", "order-named-3"]
    for bad in ([], ["no spaces"], ["x"] * 1001):
        refused = admin.post("/workflows/jobs", json={"action": "purge", "instance_ids": bad})
        assert refused.status_code == 422 and "instance_ids" in refused.json()["detail"]


def a_job_whose_app_died(gateway, job_id: str, targets: list[str], done: dict[str, str]) -> None:
    """What a job's record and the list of unfinished jobs hold when its app died mid-way."""
    now = datetime.now(UTC)
    gateway.state.put(
        f"job:{job_id}",
        {
            "job_id": job_id,
            "action": "purge",
            "older_than": None,
            "dry_run": False,
            "instance_ids": None,
            "actor": "ada",
            "status": "running",
            "total": len(targets),
            "done": len(done),
            "results": done,
            "created_at": now.isoformat(),
            "finished_at": None,
            "targets": targets,
            "runner": "a-runner-that-died",
            "lease_until": (now - timedelta(seconds=1)).isoformat(),
            "resumed": 0,
        },
    )
    gateway.state.put(jobs.RUNNING_JOBS, [job_id])


def test_a_job_left_running_by_a_dead_app_is_taken_up_where_it_stopped_at_start_up(
    client: AppFactory, gateway
) -> None:
    targets = [f"order-left-{n}" for n in range(40)]
    for iid in targets[10:]:
        gateway.workflows.add(iid, "COMPLETED", name="order_workflow")
    a_job_whose_app_died(
        gateway, "job-0123456789ab", targets, dict.fromkeys(targets[:10], "purged")
    )
    admin = client(create_app, ServiceSettings(app_id="orders"), who="admin")  # starts the app
    job = wait_job(admin, "job-0123456789ab")
    assert job["results"] == dict.fromkeys(targets, "purged") and job["done"] == 40
    assert job["resumed"] == 1 and "targets" not in job and "runner" not in job
    assert gateway.workflows.instances == {}
    assert gateway.state.get(jobs.RUNNING_JOBS)[0] == []
    audited = admin.get("/audit", params={"target": "job-0123456789ab"}).json()
    assert [r["action"] for r in audited] == ["job_finished"]


def test_a_job_whose_runner_lives_is_not_taken_over_but_a_dead_one_is_when_asked(
    client: AppFactory, gateway
) -> None:
    admin = client(create_app, ServiceSettings(app_id="orders"), who="admin")
    gateway.workflows.add("order-asked-1", "COMPLETED", name="order_workflow")
    a_job_whose_app_died(gateway, "job-aaaaaaaaaaaa", ["order-asked-1"], {})
    alive, _ = gateway.state.get("job:job-aaaaaaaaaaaa")
    later = (datetime.now(UTC) + timedelta(seconds=20)).isoformat()
    gateway.state.put("job:job-aaaaaaaaaaaa", alive | {"lease_until": later})
    assert admin.get("/workflows/jobs/job-aaaaaaaaaaaa").json()["status"] == "running"
    held, _ = gateway.state.get("job:job-aaaaaaaaaaaa")
    assert held["runner"] == "a-runner-that-died"  # its runner holds it: nobody took it
    assert "order-asked-1" in gateway.workflows.instances
    gateway.state.put("job:job-aaaaaaaaaaaa", alive)  # its lease ran out
    job = wait_job(admin, "job-aaaaaaaaaaaa")
    assert job["results"] == {"order-asked-1": "purged"} and job["resumed"] == 1


def test_a_job_whose_dead_runner_still_holds_its_lease_at_start_up_is_taken_up_when_it_ends(
    client: AppFactory, gateway
) -> None:
    """An app restarted within the lease finds its dead runner's lease still live: nobody has
    to ask about the job for it to be taken up once the lease runs out."""
    gateway.workflows.add("order-late-1", "COMPLETED", name="order_workflow")
    a_job_whose_app_died(gateway, "job-bbbbbbbbbbbb", ["order-late-1"], {})
    held, _ = gateway.state.get("job:job-bbbbbbbbbbbb")
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    gateway.state.put("job:job-bbbbbbbbbbbb", held | {"lease_until": soon})
    client(create_app, ServiceSettings(app_id="orders"), who="admin")  # starts the app
    assert gateway.state.get("job:job-bbbbbbbbbbbb")[0]["runner"] == "a-runner-that-died"
    for _ in range(100):  # read the store, not the API: asking would take it up by itself
        job, _ = gateway.state.get("job:job-bbbbbbbbbbbb")
        if job["status"] == "done":
            break
        time.sleep(0.1)
    assert job["results"] == {"order-late-1": "purged"} and job["resumed"] == 1


def wait_job(client: TestClient, job_id: str) -> dict:
    for _ in range(200):
        job = client.get(f"/workflows/jobs/{job_id}").json()
        if job["status"] == "done":
            return job
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} did not finish")


def test_history_is_in_time_order_numbered_and_zoned(ops: TestClient, gateway) -> None:
    gateway.workflows.add("order-h-1")
    # As Dapr answers: naive UTC times, committed order, event_id -1 unless a task.
    gateway.workflows.history = lambda iid: [
        {"event_id": -1, "timestamp": "2026-11-23T10:00:00", "type": "EXECUTION_STARTED"},
        {"event_id": 0, "timestamp": "2026-11-23T10:00:01", "type": "TASK_SCHEDULED"},
        {"event_id": -1, "timestamp": "2026-11-23T10:00:03", "type": "ORCHESTRATOR_STARTED"},
        {
            "event_id": -1,
            "timestamp": "2026-11-23T10:00:02",
            "type": "TASK_COMPLETED",
            "task_scheduled_id": 0,
        },
        {"event_id": -1, "timestamp": "2026-11-23T10:00:03", "type": "EXECUTION_COMPLETED"},
    ]
    rows = ops.get("/workflows/order-h-1/history").json()
    assert [(r["seq"], r["type"], r["event_id"]) for r in rows] == [
        (1, "EXECUTION_STARTED", None),
        (2, "TASK_SCHEDULED", 0),
        (3, "TASK_COMPLETED", None),
        (4, "ORCHESTRATOR_STARTED", None),
        (5, "EXECUTION_COMPLETED", None),
    ]
    assert rows[2]["timestamp"] == "2026-11-23T10:00:02Z"  # RFC 3339, UTC, Z (issue 11)
    assert rows[2]["task_scheduled_id"] == 0
