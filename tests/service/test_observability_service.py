"""/metrics: what each app counts, read back the way Prometheus reads it (the text format);
and the JSON log lines of a delivery and an activity."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client.parser import text_string_to_metric_families

from approvals.app import create_app as approvals_app
from approvals.workflows import RECORD_APPROVAL, REQUEST_NEXT_STAGE
from approvals.workflows import make_activities as approval_activities
from contracts.messages import ApprovalRequested, OrderStatusChanged
from control import instances
from notifier.app import create_app as notifier_app
from notifier.settings import NotifierSettings
from orders.activities import make_activities as order_activities
from orders.app import create_app as orders_app
from orders.workflows import PUBLISH_STATUS
from plumbing.gateway import Gateway
from plumbing.logs import about_activity, configure_logging
from plumbing.settings import ServiceSettings
from tests.fakes import LOCAL
from tests.service.conftest import AppFactory, deliver
from tests.service.test_management_service import wait_job

NOW = datetime.now(UTC)


def scrape(app: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on /metrics, by name and labels."""
    resp = app.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def view(status: str, tier: str, due: datetime, log: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "order_id": f"o-{status}-{tier}",
        "customer_id": "c-1",
        "amount": "1200.00",
        "currency": "EUR",
        "status": status,
        "tier": tier,
        "stage": 1,
        "due_at": due.isoformat(),
        "log": log,
    }


def request_for(order_id: str, tier: str = "manager", stage: int = 1) -> ApprovalRequested:
    return ApprovalRequested(
        request_id=f"{order_id}-s{stage}-{tier}",
        order_id=order_id,
        customer_id="c",
        amount="900.00",
        currency="EUR",
        tier=tier,
        stage=stage,
        due_at=NOW,
    )


def entry(kind: str, at: datetime) -> dict[str, Any]:
    return {"at": at.isoformat(), "kind": kind, "stage": 1, "tier": "manager"}


def test_metrics_need_a_token(client: AppFactory) -> None:
    app = client(orders_app, ServiceSettings(app_id="orders"))
    stranger = TestClient(app.app, base_url=LOCAL)
    resp = stranger.get("/metrics")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert (
        client(orders_app, ServiceSettings(app_id="orders"), who="viewer")
        .get("/metrics")
        .status_code
        == 200
    )


def test_orders_count_received_and_finished_by_outcome(client: AppFactory, gateway) -> None:
    app = client(orders_app, ServiceSettings(app_id="orders"))
    publish = order_activities(gateway)[PUBLISH_STATUS]
    for order_id, statuses in {
        "o-1": ("received", "completed"),
        "o-2": ("received", "expired"),
    }.items():
        for status in statuses:
            publish(
                None,
                OrderStatusChanged(order_id=order_id, status=status, at=NOW).model_dump(
                    mode="json"
                ),
            )
    publish(
        None, OrderStatusChanged(order_id="o-1", status="approved", at=NOW).model_dump(mode="json")
    )
    samples = scrape(app)
    assert value(samples, "orders_received_total") == 2
    assert value(samples, "orders_finished_total", outcome="completed") == 1
    assert value(samples, "orders_finished_total", outcome="expired") == 1
    assert value(samples, "orders_finished_total", outcome="approved") is None


def test_approvals_count_decision_time_escalations_and_the_waiting_ones(
    client: AppFactory, gateway: Gateway
) -> None:
    app = client(approvals_app, ServiceSettings(app_id="approvals"))
    run = approval_activities(gateway)
    asked = NOW - timedelta(hours=2)
    # Decided 90 minutes after it was asked; counted once, in the decision-time histogram.
    run[RECORD_APPROVAL](
        None,
        view(
            "approved",
            "manager",
            NOW,
            [entry("requested", asked), entry("accepted", asked + timedelta(minutes=90))],
        ),
    )
    # Two waiting on a manager, one of them overdue; one waiting on a VP.
    run[RECORD_APPROVAL](
        None, view("pending", "manager", NOW - timedelta(hours=1), [entry("requested", asked)])
    )
    late_vp = view("pending", "vp", NOW + timedelta(days=1), [entry("requested", asked)])
    run[RECORD_APPROVAL](None, late_vp | {"order_id": "o-waiting"})
    run[RECORD_APPROVAL](
        None,
        view("pending", "manager", NOW + timedelta(days=1), [entry("requested", asked)])
        | {"order_id": "o-3"},
    )
    # An expiry is the policy's decision, not an approver's: no decision time.
    run[RECORD_APPROVAL](None, view("expired", "vp", NOW, [entry("requested", asked)]))
    request = request_for("o-9", "vp", 2)
    run[REQUEST_NEXT_STAGE](None, request.model_dump(mode="json"))

    samples = scrape(app)
    assert value(samples, "approval_decision_seconds_count", tier="manager") == 1
    assert value(samples, "approval_decision_seconds_sum", tier="manager") == 90 * 60
    assert value(samples, "approval_decision_seconds_bucket", tier="manager", le="3600.0") == 0
    assert value(samples, "approval_decision_seconds_bucket", tier="manager", le="14400.0") == 1
    assert value(samples, "approval_decision_seconds_count", tier="vp") is None
    assert value(samples, "approval_escalations_total", to_tier="vp") == 1
    assert value(samples, "approvals_pending", tier="manager") == 2
    assert value(samples, "approvals_overdue", tier="manager") == 1
    assert value(samples, "approvals_pending", tier="vp") == 1
    assert value(samples, "approvals_overdue", tier="vp") == 0


def test_subscriptions_count_answers_and_dead_letters_by_reason(client: AppFactory) -> None:
    app = client(approvals_app, ServiceSettings(app_id="approvals"))
    request = request_for("o-1")
    assert deliver(app, "approval-requests", request)["status"] == "SUCCESS"
    assert deliver(app, "approval-requests", b"not json")["status"] == "DROP"
    assert (
        deliver(
            app,
            "approval-requests",
            request.model_copy(update={"request_id": "o-1-x"}),
            signed=False,
        )["status"]
        == "DROP"
    )
    # Back on the dead-letter topic without a reason recorded here: the retries ran out.
    lost = app.post("/deadletters/approval-requests", content=b'{"id": "lost-1"}')
    assert lost.json()["status"] == "SUCCESS"

    samples = scrape(app)
    topic = "approval-requests"
    assert value(samples, "subscription_answers_total", topic=topic, verdict="SUCCESS") == 1
    assert value(samples, "subscription_answers_total", topic=topic, verdict="DROP") == 2
    assert value(samples, "dead_letters_total", topic=topic, reason="bad_envelope") == 1
    assert value(samples, "dead_letters_total", topic=topic, reason="unsigned") == 1
    assert value(samples, "dead_letters_total", topic=topic, reason="undelivered") == 1


@pytest.mark.parametrize("failing", [False, True])
def test_notifications_are_counted_by_channel_and_result(
    client: AppFactory, gateway: Gateway, failing: bool
) -> None:
    notifier = client(
        notifier_app, NotifierSettings(app_id="notifier", channels=("log", "webhook"))
    )
    gateway.bindings.failing = failing  # type: ignore[union-attr]
    status = OrderStatusChanged(order_id="o-1", status="approved", at=NOW)
    answer = deliver(notifier, "order-status", status)["status"]
    assert answer == ("RETRY" if failing else "SUCCESS")
    samples = scrape(notifier)
    assert value(samples, "notifications_total", channel="log", result="delivered") == 1
    webhook = "failed" if failing else "delivered"
    assert value(samples, "notifications_total", channel="webhook", result=webhook) == 1


def test_a_bulk_job_counts_its_progress_and_its_end(client: AppFactory, gateway) -> None:
    app = client(orders_app, ServiceSettings(app_id="orders"))
    for i in range(3):
        gateway.workflows.add(f"order-o-{i}", "COMPLETED" if i else "RUNNING", "order_workflow")
    assert app.post("/workflows/reconcile").json()["added"] == 3
    for job in ({"action": "purge", "dry_run": True}, {"action": "purge"}):
        done = wait_job(app, app.post("/workflows/jobs", json=job).json()["job_id"])
        assert done["status"] == "done" and done["total"] == 2
    samples = scrape(app)
    assert value(samples, "bulk_job_instances_total", action="purge", result="would") == 2
    assert value(samples, "bulk_job_instances_total", action="purge", result="purged") == 2
    assert value(samples, "bulk_jobs_total", action="purge", outcome="ok") == 2


def test_a_delivery_s_log_lines_name_its_order(client: AppFactory, root_logging: None) -> None:
    app = client(approvals_app, ServiceSettings(app_id="approvals"))
    stream = io.StringIO()
    configure_logging("approvals", stream)
    request = request_for("o-7")
    assert deliver(app, "approval-requests", request)["status"] == "SUCCESS"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (answered,) = [r for r in lines if "approval-requests event o-7-s1-manager" in r["message"]]
    assert answered["order_id"] == "o-7" and answered["app"] == "approvals"


def test_an_activity_s_log_lines_name_its_instance_and_order(root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("orders", stream)

    def activity(ctx: Any, data: dict[str, Any]) -> str:
        logging.getLogger("orders.workflows").info("working")
        return "done"

    class Ctx:
        workflow_id = "order-o-8"

    assert about_activity(activity)(Ctx(), {"order_id": "o-8"}) == "done"
    (line,) = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (line["order_id"], line["instance_id"]) == ("o-8", "order-o-8")


def test_the_overview_counts_what_an_operator_looks_at_first(
    client: AppFactory, gateway: Gateway
) -> None:
    settings = replace(ServiceSettings(app_id="approvals"), traces_url="http://127.0.0.1:16686")
    app = client(approvals_app, settings, who="viewer")
    run = approval_activities(gateway)
    asked = NOW - timedelta(hours=2)
    late = view("pending", "manager", NOW - timedelta(hours=1), [entry("requested", asked)])
    run[RECORD_APPROVAL](None, late)
    run[RECORD_APPROVAL](None, view("pending", "vp", NOW + timedelta(days=1), []))
    for iid, status in (
        ("approval-a", "FAILED"),
        ("approval-b", "COMPLETED"),
        ("approval-c", "FAILED"),
    ):
        gateway.workflows.add(iid, status, "approval_workflow")  # type: ignore[union-attr]
    assert client(approvals_app, settings).post("/workflows/reconcile").json()["added"] == 3
    assert deliver(app, "decisions", b"not json")["status"] == "DROP"
    app.post("/deadletters/decisions", content=b'{"id": "x-1"}')

    seen = app.get("/overview")
    assert seen.status_code == 200, seen.text
    body = seen.json()
    assert body["app"] == "approvals" and body["traces_url"] == "http://127.0.0.1:16686"
    assert body["workflows"] == {"COMPLETED": 1, "FAILED": 2}
    assert body["dead_letters"] == {"decisions": 1}
    assert sorted(f["instance_id"] for f in body["recent_failures"]) == ["approval-a", "approval-c"]
    assert body["approvals"] == {
        "manager": {"pending": 1, "overdue": 1},
        "vp": {"pending": 1, "overdue": 0},
    }
    assert TestClient(app.app, base_url=LOCAL).get("/overview").status_code == 401


def test_an_instance_remembers_the_trace_it_was_started_in(gateway: Gateway) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("delivery") as span:
        instances.start(gateway, "order_workflow", "order-o-5", {})
    instances.set_status(gateway.state, "order-o-5", "COMPLETED")  # later, outside the trace
    (entry_,) = instances.entries(gateway.state)
    assert entry_.trace_id == format(span.get_span_context().trace_id, "032x")
    instances.start(gateway, "order_workflow", "order-o-6", {})
    assert {e.instance_id: e.trace_id for e in instances.entries(gateway.state)}[
        "order-o-6"
    ] is None
