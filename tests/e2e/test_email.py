"""E-mail through Dapr's SMTP binding to a real mail server, and decisions from its links.

Mail is read back from the mail server's own API: recipients, subject and content as they
arrived, not as the notifier meant to send them."""

from __future__ import annotations

import re

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.flow import Flow
from tests.inbox import Inbox
from tests.stack import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def inbox(stack: Stack) -> Inbox:
    return Inbox(stack.env["MAIL_INBOX_URL"])


def mail_to(inbox: Inbox, address: str, order_id: str, count: int = 1) -> list[dict]:
    return eventually(
        lambda: (found := inbox.to(address, order_id)) and len(found) >= count and found,
        30,
        f"{count} mail(s) to {address} about {order_id}",
    )


def links(message: dict) -> dict[str, str]:
    """The Approve and Reject URLs of an approver's mail, by action."""
    urls = re.findall(r'href="([^"]+/links/[^"]+)"', message["HTML"])
    return {url.split("/links/")[1].split("/")[0]: url for url in urls}


def test_managers_are_mailed_and_one_decides_from_the_mail(flow: Flow, inbox: Inbox) -> None:
    order = flow.place("1234.5", customer="erin")
    flow.pending(order.order_id)
    (bob,) = mail_to(inbox, "bob@example.test", order.order_id)
    (mia,) = mail_to(inbox, "mia@example.test", order.order_id)
    assert [t["Address"] for t in bob["To"]] == ["bob@example.test"]
    assert bob["From"]["Address"] == "approvals@example.test"
    assert bob["Subject"] == f"Approval needed: order {order.order_id}, 1234.50 EUR (manager)"
    assert "1234.50 EUR" in bob["Text"] and "stage 1" in bob["Text"]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d CET \(\d\d:\d\d UTC\)", bob["Text"])
    assert inbox.to("val@example.test", order.order_id) == []  # a VP stage is not theirs
    assert links(bob)["approve"] != links(mia)["approve"]  # each approver's own

    with httpx.Client(timeout=10) as browser:  # no token: what a person's browser has
        page = browser.get(links(bob)["approve"])
        assert page.status_code == 200 and "you are about to <b>approve</b>" in page.text
        assert flow.approval(order.order_id)["status"] == "pending"  # looking decided nothing
        done = browser.post(links(bob)["approve"], data={"reason": "from my inbox"})
        assert done.status_code == 202, done.text
        state = flow.finished(order.order_id)
        assert (state["result"]["decided_by"], state["result"]["reason"]) == (
            "bob",
            "from my inbox",
        )
        again = browser.post(links(bob)["reject"])
        assert again.status_code == 410 and "used already" in again.text
        late = browser.get(links(mia)["reject"])
        assert late.status_code == 409 and "already approved" in late.text

    audit = flow.http.get(f"{flow.approvals}/audit", params={"target": order.order_id}).json()
    assert any(a["actor"] == "bob" and a["outcome"].startswith("ok: approve") for a in audit)

    told = mail_to(inbox, "erin@customers.example.test", order.order_id, count=4)
    subjects = {m["Subject"] for m in told}
    assert f"Order {order.order_id}: completed" in subjects
    for mail in told:
        assert "bob" not in mail["Text"] and "from my inbox" not in mail["Text"]
    # Once per notification: as many mails as the customer was told statuses.
    assert len(inbox.to("erin@customers.example.test", order.order_id)) == len(
        flow.customer_statuses(order.order_id, "completed", expect=4)
    )
