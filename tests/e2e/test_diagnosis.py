"""Why is it stuck? Each situation made on the real runtime, then diagnosed through the API and
approvals-ctl: an event raised under a misspelled name (through the orders sidecar's own
workflow API, as a script with the wrong name would), a suspended instance, an activity that
keeps failing (tests/e2e/hold). The instance past its due time is in test_deadlines.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import Stack
from orders.workflows import ADVANCE_ORDER
from tests.e2e.flow import Flow
from tests.e2e.test_control_room import ctl
from tests.e2e.test_durability import restart_hooked
from tests.stack import eventually

pytestmark = pytest.mark.e2e


def diagnosis(flow: Flow, iid: str, app: str = "orders") -> dict[str, Any]:
    code, out = ctl(flow.stack, "viewer", "--app", app, "diagnose", iid)
    assert code == 0, out
    return out  # type: ignore[no-any-return]


def started(flow: Flow, iid: str) -> dict[str, Any] | None:
    """The diagnosis, or None while the instance does not exist yet."""
    code, out = ctl(flow.stack, "viewer", "--app", "orders", "diagnose", iid)
    if code != 0 and f"no workflow instance '{iid}'" in str(out):
        return None
    assert code == 0, out
    return out  # type: ignore[no-any-return]


def raise_by_hand(flow: Flow, iid: str, event: str, data: Any) -> None:
    """Raise an event through the orders sidecar's workflow API, around the app."""
    orders = flow.stack.apps["orders"]
    resp = flow.http.post(
        f"{orders.dapr_url}/v1.0/workflows/dapr/{iid}/raiseEvent/{event}",
        json=data,
        headers={"Authorization": "", **orders.dapr_headers},
    )
    assert resp.status_code == 202, resp.text


def test_a_misnamed_event_and_a_suspension_are_diagnosed(flow: Flow) -> None:
    order = flow.place("1800.00")
    iid = f"order-{order.order_id}"
    flow.pending(order.order_id)
    eventually(
        lambda: (flow.order(order.order_id) or {}).get("status") == "awaiting_approval",
        what="the order to await its approval",
    )
    outcome = {"order_id": order.order_id, "outcome": "approved", "decided_by": "script"}
    raise_by_hand(flow, iid, "approval-outcome", outcome)
    found = eventually(
        lambda: (d := diagnosis(flow, iid))["unconsumed_events"] and d,
        what="the misnamed event in the history",
    )
    (stranded,) = found["unconsumed_events"]
    assert stranded["name"] == "approval-outcome" and stranded["resembles"] == "approval_outcome"
    assert found["summary"].startswith("event 'approval-outcome' arrived at ")
    assert found["waiting_for"]["events"] == ["approval_outcome", "approval_stage", "cancel"]
    (backstop,) = found["waiting_for"]["timers"]
    assert backstop["kind"] == "timer" and not backstop["overdue"]
    assert found["runtime"]["sidecar"] == "ok" and found["runtime"]["workflow_workers"] >= 1
    assert found["status"] == "RUNNING" and (flow.order(order.order_id) or {})["status"] == (
        "awaiting_approval"
    )
    code, listed = ctl(flow.stack, "viewer", "list", "--stuck")
    assert code == 0, listed
    why = {i["instance_id"]: i["stuck"] for i in listed["instances"]}
    assert why[iid] == ["event 'approval-outcome' arrived and no wait took it"]

    assert ctl(flow.stack, "operator", "suspend", iid, "--reason", "looking into it")[0] == 0
    found = diagnosis(flow, iid)
    assert found["status"] == "SUSPENDED"
    assert found["summary"] == "it is suspended: nothing runs and events wait until it is resumed"
    assert ctl(flow.stack, "operator", "resume", iid, "--reason", "seen")[0] == 0
    resp = flow.http.post(f"{flow.orders}/orders/{order.order_id}/cancel", json={"reason": "test"})
    assert resp.status_code == 202, resp.text
    flow.finished(order.order_id)


@pytest.fixture
def failing_orders(stack: Stack, tmp_path: Path) -> Iterator[Path]:
    """The orders app restarted with `advance_order` failing until `<tmp_path>/release` exists;
    put back as it was afterwards."""
    restart_hooked(stack, {"E2E_FAIL_ACTIVITY": ADVANCE_ORDER}, tmp_path)
    yield tmp_path
    (tmp_path / "release").touch()
    stack.restart("orders", crash=False)


def test_a_failing_activity_is_diagnosed_with_its_failures_and_retry(
    flow: Flow, failing_orders: Path
) -> None:
    order = flow.place("130.00")  # auto-approved: one advance_order, which fails
    iid = f"order-{order.order_id}"
    # The order is accepted before its workflow is scheduled: until then diagnose says 404.
    found = eventually(
        lambda: (d := started(flow, iid)) and d["activities"]["failures"] and d,
        what="advance_order to fail",
    )
    (failure, *_) = found["activities"]["failures"]
    assert failure["name"] == ADVANCE_ORDER and failure["attempt"] == 1
    assert "injected failure of advance_order" in failure["failure"]
    # Five attempts over about 15 s: it is between attempts (a retry timer) or in the next one.
    assert found["status"] == "RUNNING", found
    assert any(
        "activity 'advance_order' failed (attempt" in f or "has been running since" in f
        for f in found["findings"]
    ), found["findings"]
    (failing_orders / "release").touch()
    done = flow.finished(order.order_id, timeout=60)
    assert done["status"] == "completed"
    after = diagnosis(flow, iid)
    assert after["summary"] == "it has ended (COMPLETED): nothing waits"
    assert after["activities"]["failures"][0]["name"] == ADVANCE_ORDER
