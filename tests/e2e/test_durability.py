"""Workflows continue from their history when the app that hosts them dies (issue 15, part 3).

The app process is killed with SIGKILL while its workflow waits, or while one of its activities
runs, and started again under the same sidecar; the workflow must go on from the history the
runtime kept, not start over, and an activity cut short runs again.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import Stack
from orders.workflows import ADVANCE_ORDER
from tests.e2e.flow import Flow
from tests.stack import WebhookSink, eventually

pytestmark = pytest.mark.e2e
HOLD = Path(__file__).parent / "hold"


def test_an_approval_waiting_when_its_app_crashes_goes_on_after_the_restart(
    flow: Flow, stack: Stack
) -> None:
    order = flow.place("1500.00")
    flow.pending(order.order_id)
    before = flow.http.get(f"{flow.approvals}/workflows/approval-{order.order_id}").json()
    stack.restart("approvals")  # SIGKILL, then the same command again
    resp = eventually(
        lambda: (r := flow.decide(order.order_id, "manager")).status_code == 202 and r,
        what="the restarted approvals app to take a decision",
    )
    assert resp.status_code == 202
    done = flow.finished(order.order_id)
    assert done["result"]["decided_by"] == "bob"
    after = flow.http.get(f"{flow.approvals}/workflows/approval-{order.order_id}").json()
    assert after["created_at"] == before["created_at"]  # the same instance, not a new one
    approval = flow.approval(order.order_id)
    assert approval is not None
    assert [e["kind"] for e in approval["log"]].count("requested") == 1
    assert approval["log"][-1]["kind"] == "accepted"


def test_an_order_waiting_when_its_app_crashes_goes_on_after_the_restart(
    flow: Flow, stack: Stack, webhook: WebhookSink
) -> None:
    order = flow.place("1600.00")
    flow.pending(order.order_id)
    before = flow.http.get(f"{flow.orders}/workflows/order-{order.order_id}").json()
    stack.restart("orders")
    assert flow.decide(order.order_id, "vp").status_code == 202
    done = flow.finished(order.order_id)
    assert done["result"]["decided_by"] == "val"
    after = flow.http.get(f"{flow.orders}/workflows/order-{order.order_id}").json()
    assert after["created_at"] == before["created_at"]  # the same instance, not a new one
    told_once(flow, webhook, order.order_id)


def told_once(flow: Flow, webhook: WebhookSink, order_id: str) -> None:
    """Once the customer heard of the end, each notification went out once: the webhook sink
    counts the calls per notification id (the notifier's own records are unique by design)."""
    flow.customer_statuses(order_id, "completed")
    calls = Counter(n["id"] for _, n in webhook.for_order(order_id))
    assert calls and set(calls.values()) == {1}, calls


def restart_hooked(stack: Stack, hook: dict[str, str], folder: Path) -> Any:
    """Restart the orders app once with tests/e2e/hold on its path and `hook` (E2E_HOLD_ACTIVITY
    or E2E_FAIL_ACTIVITY) in its environment; its next restart brings it back as it was.
    Returns the process."""
    (proc,) = [p for p in stack.procs if p.name == "orders"]
    original = dict(proc.env)
    proc.env = {
        **original,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HOLD), original.get("PYTHONPATH")])),
        "E2E_HOLD_DIR": str(folder),
        **hook,
    }
    try:
        stack.restart("orders", crash=False)
    finally:
        proc.env = original
    return proc


@pytest.fixture
def held_orders(stack: Stack, tmp_path: Path) -> Iterator[Path]:
    """The orders app restarted with its `advance_order` activity held open (tests/e2e/hold).
    Its next restart, in the test or after it, brings the orders app back as it was."""
    proc = restart_hooked(stack, {"E2E_HOLD_ACTIVITY": ADVANCE_ORDER}, tmp_path)
    held_pid = proc.pid
    yield tmp_path
    if proc.pid == held_pid:  # the test stopped before its own restart
        (tmp_path / "release").touch()
        stack.restart("orders", crash=False)


def test_an_order_whose_app_dies_while_an_activity_runs_finishes_it_once_after_the_restart(
    flow: Flow, stack: Stack, held_orders: Path, webhook: WebhookSink
) -> None:
    order = flow.place("120.00")  # auto-approved: one advance_order, which fulfils it
    marker = eventually(
        lambda: next(iter(held_orders.glob("running-*.json")), None),
        what="advance_order to start in the orders app",
    )
    (fulfil,) = [s["data"] for s in json.loads(marker.read_text()) if s["kind"] == "fulfil"]
    assert fulfil["order_id"] == order.order_id
    record = flow.order(order.order_id)
    assert record is not None and record["workflow_status"] == "RUNNING"
    assert flow.fulfilment(order.order_id) is None  # held before it wrote anything

    stack.restart("orders")  # SIGKILL mid-activity; it comes back without the hold
    done = flow.finished(order.order_id)
    assert (done["result"]["status"], done["result"]["reason"]) == ("completed", "auto_approved")
    assert flow.fulfilment(order.order_id)["amount"] == "120.00"
    history = flow.http.get(f"{flow.orders}/workflows/order-{order.order_id}/history").json()
    steps = [(e["type"], e["name"]) for e in history]
    assert steps.count(("TASK_SCHEDULED", ADVANCE_ORDER)) == 1  # scheduled once, run again
    fulfilled = [e for e in history if e["type"] == "TASK_COMPLETED"]
    assert [e["task_scheduled_id"] for e in fulfilled].count(
        next(e["event_id"] for e in history if e["name"] == ADVANCE_ORDER)
    ) == 1
    told_once(flow, webhook, order.order_id)


def test_a_message_cut_off_mid_delivery_is_handed_out_again_within_seconds(
    flow: Flow, stack: Stack
) -> None:
    """The sidecar hands an order to a hung app and dies with it unanswered: the message stays
    pending in Redis under the app's consumer until the pub/sub's processingTimeout (10 s,
    checked every redeliverInterval, 2 s) hands it out again, not Redis's defaults (60 s and
    15 s). The deadline below is one the defaults cannot meet."""
    (app,) = [p for p in stack.procs if p.name == "orders"]
    assert app.popen is not None
    os.killpg(app.popen.pid, signal.SIGSTOP)  # hung: the delivery below waits on it
    try:
        before = flow.unacknowledged("orders", "orders")
        order = flow.place("45.00")
        eventually(
            lambda: flow.unacknowledged("orders", "orders") > before,
            what="the sidecar to read the order and hand it to the hung app",
        )
        stack.restart("orders-daprd")  # SIGKILL with the delivery open, then again
    finally:
        # The hung app dies too (SIGKILL works on a stopped process), with the copy the old
        # sidecar had written into its socket: only a redelivery can finish the order now.
        stack.restart("orders")
    flow.finished(order.order_id, timeout=40)  # measured: 8 s here; over 40 s with defaults
