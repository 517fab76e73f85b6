"""What happens when a deadline passes: escalation to a VP, expiry, the order following its
approval to the next stage. These run on a stack of their own whose deadlines are short
(tests/stack.py DEADLINE_ENV: the manager's 4 s, the VP's 20 s), so the shared stack can keep
deadlines no test reaches and no decision elsewhere races a timer on a loaded machine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.flow import Flow
from tests.e2e.test_email import links
from tests.inbox import Inbox
from tests.stack import DEADLINE_ENV, WebhookSink, e2e_stack, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def deadline_stack(
    tmp_path_factory: pytest.TempPathFactory, webhook: WebhookSink
) -> Iterator[Stack]:
    yield from e2e_stack(tmp_path_factory.mktemp("deadlines"), DEADLINE_ENV, webhook)


@pytest.fixture
def flow(deadline_stack: Stack, http: httpx.Client) -> Any:
    return Flow(deadline_stack, http)


def test_manager_timeout_escalates_to_vp_who_approves(flow: Flow) -> None:
    order = flow.place("2500.00")
    view = flow.pending(order.order_id, tier="vp", timeout=30)
    assert view["stage"] == 2
    kinds = [e["kind"] for e in view["log"] if e["kind"] != "reminded"]  # its own test
    assert kinds == ["requested", "timed_out", "escalated"]
    assert flow.decide(order.order_id, "vp").status_code == 202
    state = flow.finished(order.order_id)
    assert state["result"]["decided_by"] == "val"
    eventually(
        lambda: (
            {"approvers:manager", "approvers:vp"}
            <= {n["audience"] for n in flow.notifications(order.order_id)}
        ),
        what="both tiers of approvers to be notified",
    )


def test_last_stage_timeout_expires_the_order(flow: Flow) -> None:
    order = flow.place("7000.00")
    state = flow.finished(order.order_id, timeout=90)
    assert state["result"]["status"] == "expired"
    assert state["result"]["reason"] == "approval_timeout"
    assert flow.customer_statuses(order.order_id, "expired")[-1] == "expired"
    decided = flow.decide(order.order_id, "vp")
    assert decided.status_code == 410, decided.text


def test_after_escalation_the_order_says_vp_and_the_new_due_time(flow: Flow) -> None:
    order = flow.place("2500.00")
    escalated = eventually(
        lambda: (
            (o := flow.order(order.order_id)) and (o.get("approval") or {}).get("stage") == 2 and o
        ),
        timeout=40,
        what="the order to follow its approval to stage 2",
    )
    assert escalated["status"] == "awaiting_approval"
    assert escalated["approval"]["tier"] == "vp"
    due = escalated["approval"]["due_at"]
    assert escalated["detail"].startswith(f"vp approval due {due} (stage 2)")
    assert escalated["workflow"]["custom_status"] == f"awaiting vp approval (stage 2), due {due}"
    # The order's due time is the approval's, set when the manager's deadline passed: ahead.
    approval = flow.approval(order.order_id)
    assert approval is not None and approval["stage"] == 2 and approval["due_at"] == due
    timed_out = next(e for e in approval["log"] if e["kind"] == "timed_out")  # the manager's
    assert datetime.fromisoformat(due) > datetime.fromisoformat(timed_out["at"])


def test_vps_are_told_why_the_stage_came_to_them_and_reminded_once_before_it_is_due(
    flow: Flow,
) -> None:
    inbox = Inbox(flow.stack.env["MAIL_INBOX_URL"])
    order = flow.place("2600.00")

    def vals() -> list[dict] | None:
        found = inbox.to("val@example.test", order.order_id)
        return found if any(m["Subject"].startswith("Reminder") for m in found) else None

    escalation, reminder = eventually(vals, 40, "val's escalation mail and reminder")
    assert escalation["Subject"] == f"Approval needed: order {order.order_id}, 2600.00 EUR (vp)"
    assert "the manager did not decide in time; escalated to a VP" in escalation["Text"]
    assert reminder["Subject"] == (
        f"Reminder: approval needed: order {order.order_id}, 2600.00 EUR (vp)"
    )
    assert "nobody has decided yet" in reminder["Text"] and "stage 2" in reminder["Text"]
    assert len(inbox.to("vera@example.test", order.order_id)) == 2  # every VP, once each
    assert flow.decide(order.order_id, "vp").status_code == 202
    flow.finished(order.order_id)
    # The manager's stage was shorter than the reminder's lead: bob was asked, not reminded.
    assert [m["Subject"][:8] for m in inbox.to("bob@example.test", order.order_id)] == ["Approval"]
    assert len(inbox.to("val@example.test", order.order_id)) == 2  # still once each


def test_an_order_waiting_for_a_vp_after_escalation_is_cancelled(flow: Flow) -> None:
    order = flow.place("2600.00")
    view = flow.pending(order.order_id, tier="vp", timeout=30)
    assert view["stage"] == 2
    eventually(
        lambda: ((flow.order(order.order_id) or {}).get("approval") or {}).get("stage") == 2,
        timeout=30,
        what="the order to follow its approval to stage 2",
    )
    resp = flow.http.post(
        f"{flow.orders}/orders/{order.order_id}/cancel", json={"reason": "customer withdrew"}
    )
    assert resp.status_code == 202, resp.text
    state = flow.finished(order.order_id)
    assert state["status"] == "cancelled" and state["result"]["decided_by"] == "ada"  # the admin
    approval = eventually(
        lambda: (a := flow.approval(order.order_id)) and a["status"] == "cancelled" and a,
        what="the VP stage to be closed",
    )
    assert approval["stage"] == 2 and approval["tier"] == "vp"
    kinds = [e["kind"] for e in approval["log"]]
    # The VP stage's reminder (15 s before its 20 s) may come first on a slow machine; once.
    assert [k for k in kinds if k != "reminded"] == [
        "requested",
        "timed_out",
        "escalated",
        "cancelled",
    ]
    assert kinds.count("reminded") <= 1 and kinds[-1] == "cancelled"
    assert flow.customer_statuses(order.order_id, "cancelled")[-1] == "cancelled"
    assert flow.decide(order.order_id, "vp").status_code == 409


@pytest.mark.parametrize(
    ("amount", "stage", "before"),
    [("2650.00", 2, ["requested", "timed_out", "escalated"]), ("6500.00", 1, ["requested"])],
    ids=["after-escalation", "asked-of-a-vp-first"],
)
def test_a_vp_stage_cancelled_after_its_reminder_mails_nothing_more(
    flow: Flow, amount: str, stage: int, before: list[str]
) -> None:
    inbox = Inbox(flow.stack.env["MAIL_INBOX_URL"])
    order = flow.place(amount)

    def reminder() -> dict | None:
        found = inbox.to("val@example.test", order.order_id)
        return next((m for m in found if m["Subject"].startswith("Reminder")), None)

    reminded = eventually(reminder, 40, "val's reminder")
    eventually(
        lambda: ((flow.order(order.order_id) or {}).get("approval") or {}).get("stage") == stage,
        timeout=30,
        what=f"the order to follow its approval to stage {stage}",
    )
    resp = flow.http.post(
        f"{flow.orders}/orders/{order.order_id}/cancel", json={"reason": "customer withdrew"}
    )
    assert resp.status_code == 202, resp.text
    assert flow.finished(order.order_id)["status"] == "cancelled"
    approval = eventually(
        lambda: (a := flow.approval(order.order_id)) and a["status"] == "cancelled" and a,
        what="the reminded VP stage to be closed",
    )
    assert [e["kind"] for e in approval["log"]] == [*before, "reminded", "cancelled"]
    with httpx.Client(timeout=10) as browser:  # the reminder's link, as val would click it
        late = browser.post(links(reminded)["approve"])
        assert late.status_code == 409 and "already cancelled" in late.text
    assert flow.approval(order.order_id)["status"] == "cancelled"
    assert len(inbox.to("val@example.test", order.order_id)) == 2  # the request and one reminder


def test_an_approval_past_its_due_time_is_listed_as_stuck_and_diagnosed(flow: Flow) -> None:
    order = flow.place("2700.00")
    flow.pending(order.order_id)
    iid = f"approval-{order.order_id}"
    resp = flow.http.post(f"{flow.approvals}/workflows/{iid}/suspend", json={"reason": "held"})
    assert resp.status_code == 200, resp.text

    def stuck() -> list[str] | None:
        listed = flow.http.get(f"{flow.approvals}/workflows", params={"stuck": "true"}).json()
        return next((i["stuck"] for i in listed["instances"] if i["instance_id"] == iid), None)

    # The index's deadline (the manager's 4 s, then the VP's 20 s) passes while it is held.
    why = eventually(stuck, timeout=60, what=f"{iid} to be past its deadline")
    assert why[0].startswith("past its deadline")
    found = flow.http.get(f"{flow.approvals}/workflows/{iid}/diagnosis").json()
    assert found["summary"] == "it is suspended: nothing runs and events wait until it is resumed"
    assert found["past_deadline"] and any(
        f.startswith("it is past its deadline") for f in found["findings"]
    )
    assert found["waiting_for"]["events"] == ["cancel", "decision"]
