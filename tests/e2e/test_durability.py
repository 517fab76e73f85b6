"""Workflows continue from their history when the app that hosts them dies (issue 15, part 3).

The app process is killed with SIGKILL while its workflow waits and started again under the
same sidecar; the workflow must go on from the history the runtime kept, not start over.
"""

from __future__ import annotations

import pytest

from devstack.stack import Stack
from tests.e2e.flow import Flow
from tests.stack import eventually

pytestmark = pytest.mark.e2e


def test_an_approval_waiting_when_its_app_crashes_goes_on_after_the_restart(
    flow: Flow, stack: Stack
) -> None:
    order = flow.place("1500.00")
    flow.pending(order.order_id)
    before = flow.http.get(f"{flow.approvals}/workflows/approval-{order.order_id}").json()
    stack.restart("approvals")  # SIGKILL, then the same command again
    # A VP may decide any stage, so this holds even if the short e2e manager deadline passed
    # while the app was down and the approval escalated.
    resp = eventually(
        lambda: (r := flow.decide(order.order_id, "vp")).status_code == 202 and r,
        what="the restarted approvals app to take a decision",
    )
    assert resp.status_code == 202
    done = flow.finished(order.order_id)
    assert done["result"]["decided_by"] == "val"
    after = flow.http.get(f"{flow.approvals}/workflows/approval-{order.order_id}").json()
    assert after["created_at"] == before["created_at"]  # the same instance, not a new one
    approval = flow.approval(order.order_id)
    assert approval is not None
    assert [e["kind"] for e in approval["log"]].count("requested") == 1
    assert approval["log"][-1]["kind"] == "accepted"


def test_an_order_waiting_when_its_app_crashes_goes_on_after_the_restart(
    flow: Flow, stack: Stack
) -> None:
    order = flow.place("1600.00")
    flow.pending(order.order_id)
    stack.restart("orders")
    assert flow.decide(order.order_id, "vp").status_code == 202
    done = flow.finished(order.order_id)
    assert done["result"]["decided_by"] == "val"
    statuses = [n["text"] for n in flow.notifications(order.order_id)]
    assert len(statuses) == len(set(statuses))  # nothing told twice
