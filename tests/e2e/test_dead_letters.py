"""What can never succeed goes to the subscriber's dead-letter topic, with a reason, and the
apps stay healthy: the other e2e tests in this run keep flowing after these."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.messages import ApprovalOutcome, DecisionSubmitted
from tests.e2e.flow import Flow
from tests.stack import eventually, unique

pytestmark = pytest.mark.e2e

# topic -> (the app whose sidecar may publish there, the apps that subscribe)
TOPICS = {
    "orders": ("orders", ["orders"]),
    "approval-outcomes": ("approvals", ["orders"]),
    "approval-requests": ("orders", ["approvals", "notifier"]),
    "decisions": ("approvals", ["approvals"]),
    "order-status": ("orders", ["notifier"]),
    "approval-cancellations": ("orders", ["approvals"]),
}


# Topics whose messages must be signed (by orders or approvals).
SIGNED = {
    "decisions",
    "approval-outcomes",
    "approval-requests",
    "order-status",
    "approval-cancellations",
}


def dead_letters(flow: Flow, app: str, topic: str) -> list[dict[str, Any]]:
    url = flow.stack.apps[app].app_url
    return flow.http.get(
        f"{url}/deadletters",  # type: ignore[no-any-return]
        params={"topic": topic},
    ).json()


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_malformed_and_wrong_schema_messages_are_dead_lettered(flow: Flow, topic: str) -> None:
    via, subscribers = TOPICS[topic]
    marker = unique("junk")
    flow.publish(f'{{"{marker}": '.encode(), topic, via=via, raw=True)  # not even JSON
    wrong_id = unique("wrong")
    wrong = {
        "specversion": "1.0",
        "id": wrong_id,
        "source": "e2e",
        "type": "t",
        "datacontenttype": "application/json",
        "data": {"bogus": marker},
    }
    flow.publish(json.dumps(wrong).encode(), topic, via=via)
    for app in subscribers:
        kept = eventually(
            lambda app=app: (
                lambda items: (
                    items
                    if (
                        any(i["event_id"] == wrong_id for i in items)
                        and any(marker in i["body"] and i["event_id"] != wrong_id for i in items)
                    )
                    else None
                )
            )(dead_letters(flow, app, topic)),
            timeout=30,
            what=f"both bad messages on {topic} dead-lettered by {app}",
        )
        (schema,) = [i for i in kept if i["event_id"] == wrong_id]
        if topic in SIGNED:  # refused before its content is even read
            assert "unsigned" in schema["reason"]
        else:
            assert "is invalid" in schema["reason"] and "bogus" in schema["reason"]
        assert flow.http.get(f"{flow.stack.apps[app].app_url}/readyz").status_code == 200


def test_decision_for_an_order_that_never_appears_is_dead_lettered_after_the_hold(
    flow: Flow,
) -> None:
    orphan = DecisionSubmitted(
        decision_id=unique("d"),
        order_id=unique("ghost"),
        approved=True,
        approver_id="vp-1",
        approver_role="vp",
        decided_at=datetime.now(UTC),
    )
    flow.publish(orphan, "decisions", via="approvals")
    (kept,) = eventually(
        lambda: [
            i
            for i in dead_letters(flow, "approvals", "decisions")
            if i["event_id"] == orphan.decision_id
        ],
        timeout=90,
        what="the orphan decision in the dead letters",
    )
    assert "appeared within 20s" in kept["reason"]


def test_forged_decisions_and_outcomes_through_the_sidecars_have_no_effect(flow: Flow) -> None:
    order = flow.place("9000.00")
    flow.pending(order.order_id, tier="vp")
    forged_decision = DecisionSubmitted(
        decision_id=unique("d"),
        order_id=order.order_id,
        approved=True,
        approver_id="val",
        approver_role="vp",
        decided_at=datetime.now(UTC),
    )
    forged_outcome = ApprovalOutcome(
        order_id=order.order_id,
        outcome="approved",
        decided_by="val",
        decided_at=datetime.now(UTC),
    )
    flow.publish(forged_decision, "decisions", via="approvals", signed=False)
    flow.publish(forged_outcome, "approval-outcomes", via="approvals", signed=False)
    for app, topic, event_id in (
        ("approvals", "decisions", forged_decision.decision_id),
        ("orders", "approval-outcomes", forged_outcome.message_id),
    ):
        (kept,) = eventually(
            lambda app=app, topic=topic, event_id=event_id: [
                i for i in dead_letters(flow, app, topic) if i["event_id"] == event_id
            ],
            what=f"the forged {topic} message in {app}'s dead letters",
        )
        assert "unsigned" in kept["reason"]
        audited = flow.http.get(
            f"{flow.stack.apps[app].app_url}/audit", params={"target": event_id}
        ).json()
        assert [a["action"] for a in audited] == [f"deliver {topic}"]
        assert audited[0]["outcome"].startswith("refused: ")
    assert flow.order(order.order_id)["workflow_status"] == "RUNNING"
    approval = flow.http.get(f"{flow.approvals}/approvals/{order.order_id}").json()
    assert approval["status"] == "pending"
    assert all(e["kind"] == "requested" for e in approval["log"])
