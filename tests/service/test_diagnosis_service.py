"""GET /workflows/{id}/diagnosis and GET /workflows?stuck=true through the orders app, with
fakes at the gateway seam and a fake sidecar answering its metadata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from control import instances
from orders.app import create_app
from plumbing.settings import ServiceSettings
from plumbing.subscriptions import DEAD_LETTERS_KEY
from tests.fakes import FakeSidecar, fake_gateway
from tests.service.conftest import AppFactory

LONG_AGO = datetime.now(UTC) - timedelta(days=2)
WAITS = [
    {
        "event_id": -1,
        "type": "EXECUTION_STARTED",
        "name": "order_workflow",
        "timestamp": LONG_AGO.isoformat(),
    },
    {
        "event_id": 5,
        "type": "TIMER_CREATED",
        "waits_for": "approval_outcome",
        "fire_at": None,
        "timestamp": LONG_AGO.isoformat(),
    },
    {
        "event_id": -1,
        "type": "EVENT_RAISED",
        "name": "approval-outcome",
        "timestamp": LONG_AGO.isoformat(),
    },
]


@pytest.fixture
def sidecar() -> FakeSidecar:
    return FakeSidecar()


@pytest.fixture
def gateway(sidecar: FakeSidecar) -> Any:
    return fake_gateway(sidecar)


@pytest.fixture
def viewer(client: AppFactory) -> TestClient:
    return client(create_app, ServiceSettings(app_id="orders"), who="viewer")


def indexed(gateway: Any, iid: str, status: str = "RUNNING", deadline: Any = None) -> None:
    gateway.workflows.add(iid, status, name="order_workflow")
    instances.track(gateway.state, iid, "order_workflow", status, LONG_AGO, deadline)


def test_a_diagnosis_names_the_stranded_event_the_dead_letters_and_the_worker(
    viewer: TestClient, gateway: Any, sidecar: FakeSidecar
) -> None:
    indexed(gateway, "order-o-1")
    gateway.workflows.histories["order-o-1"] = WAITS
    gateway.state.put(
        DEAD_LETTERS_KEY,
        [
            {"topic": "approval-outcomes", "event_id": "o-1-outcome", "reason": "unsigned"},
            {"topic": "orders", "event_id": "o-2", "reason": "x"},
        ],
    )
    found = viewer.get("/workflows/order-o-1/diagnosis").json()
    assert found["summary"].startswith("event 'approval-outcome' arrived")
    assert found["unconsumed_events"][0]["resembles"] == "approval_outcome"
    assert [d["event_id"] for d in found["dead_letters"]] == ["o-1-outcome"]
    assert found["runtime"]["workflow_workers"] == 1 and found["runtime"]["sidecar"] == "ok"
    assert found["quiet_for_s"] > 86400
    sidecar.workers = 0
    found = viewer.get("/workflows/order-o-1/diagnosis").json()
    assert found["summary"].startswith("no workflow worker is connected")


def test_a_diagnosis_of_an_unknown_instance_is_404(viewer: TestClient) -> None:
    resp = viewer.get("/workflows/order-nope/diagnosis")
    assert resp.status_code == 404 and "no workflow instance" in resp.json()["detail"]
    assert viewer.get("/workflows/bad%20id/diagnosis").status_code == 422


def test_the_stuck_filter_lists_only_live_stuck_instances_with_why(
    viewer: TestClient, gateway: Any
) -> None:
    indexed(gateway, "order-late", deadline=LONG_AGO)
    indexed(gateway, "order-stranded", deadline=datetime.now(UTC) + timedelta(days=5))
    gateway.workflows.histories["order-stranded"] = WAITS
    indexed(gateway, "order-waits", deadline=datetime.now(UTC) + timedelta(days=5))
    gateway.workflows.histories["order-waits"] = [
        *WAITS[:2],
        {
            "event_id": 4,
            "type": "TIMER_CREATED",
            "fire_at": "2099-01-01T00:00:00Z",
            "timestamp": LONG_AGO.isoformat(),
        },
    ]
    indexed(gateway, "order-done", "COMPLETED", deadline=LONG_AGO)
    found = viewer.get("/workflows", params={"stuck": "true"}).json()
    why = {i["instance_id"]: i["stuck"] for i in found["instances"]}
    assert set(why) == {"order-late", "order-stranded"} and found["total"] == 2
    assert why["order-late"][0].startswith("past its deadline")
    assert why["order-stranded"][0] == "event 'approval-outcome' arrived and no wait took it"
    assert why["order-stranded"][1].startswith("running, no progress since")
    plain = viewer.get("/workflows").json()
    assert plain["total"] == 4 and all("stuck" not in i for i in plain["instances"])


def test_quiet_instances_count_as_stuck_after_stuck_after(viewer: TestClient, gateway) -> None:
    indexed(gateway, "order-quiet")
    gateway.workflows.histories["order-quiet"] = WAITS[:2]
    found = viewer.get("/workflows", params={"stuck": "true", "stuck_after": "72h"}).json()
    assert found["total"] == 0  # quiet for two days only
    found = viewer.get("/workflows", params={"stuck": "true"}).json()  # STUCK_AFTER: 1h
    (row,) = found["instances"]
    assert row["stuck"][0].startswith("running, no progress since")
    bad = viewer.get("/workflows", params={"stuck": "true", "stuck_after": "soon"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("stuck_after:")
