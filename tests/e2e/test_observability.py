"""What an operator sees of one order: its trace in Jaeger (through Jaeger's query API), the
apps' and sidecars' metrics, and the JSON log lines that lead to the trace."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import Stack
from tests.e2e.flow import Flow
from tests.stack import eventually
from tests.unit.test_deploy import DAPR_METRICS

pytestmark = pytest.mark.e2e


class Trace:
    """One trace as Jaeger's query API returns it: spans by id, with their service."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.spans = {s["spanID"]: s for s in data["spans"]}
        self.service = {
            sid: data["processes"][s["processID"]]["serviceName"] for sid, s in self.spans.items()
        }

    def parent(self, span: dict[str, Any]) -> dict[str, Any] | None:
        refs = [r for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
        return self.spans.get(refs[0]["spanID"]) if refs else None

    def roots(self) -> list[dict[str, Any]]:
        return [s for s in self.spans.values() if self.parent(s) is None]

    def ancestors(self, span: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while (span := self.parent(span)) is not None:  # type: ignore[assignment]
            yield span

    def named(self, text: str, service: str | None = None) -> list[dict[str, Any]]:
        return [
            s
            for sid, s in self.spans.items()
            if text in s["operationName"] and service in (None, self.service[sid])
        ]

    def tag(self, span: dict[str, Any], key: str) -> Any:
        return next((t["value"] for t in span.get("tags", []) if t["key"] == key), None)

    def is_under(self, span: dict[str, Any], ancestor: dict[str, Any]) -> bool:
        return any(a["spanID"] == ancestor["spanID"] for a in self.ancestors(span))


def jaeger_trace(flow: Flow, trace_id: str, complete: Any) -> Trace:
    """The trace once `complete(trace)` holds (spans reach Jaeger in batches)."""
    ui = flow.stack.tracing.ui_url  # type: ignore[union-attr]

    def fetch() -> Trace | None:
        resp = flow.http.get(f"{ui}/api/traces/{trace_id}")
        if resp.status_code != 200 or not resp.json().get("data"):
            return None
        got = Trace(resp.json()["data"][0])
        return got if complete(got) else None

    return eventually(fetch, 60, f"trace {trace_id} in Jaeger with every hop")


def test_one_order_is_one_trace_across_the_three_services_and_both_workflows(
    flow: Flow, stack: Stack
) -> None:
    assert stack.tracing is not None and stack.tracing.ui_url, "the e2e stack runs Jaeger"
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    placed = flow.http.post(
        f"{flow.orders}/orders",
        json={
            "order_id": (order_id := f"t-{secrets.token_hex(6)}"),
            "customer_id": "c-1",
            "amount": "1200.00",
            "currency": "EUR",
        },
        headers={"traceparent": traceparent},
    )
    assert placed.status_code == 202, placed.text
    flow.pending(order_id)
    assert flow.decide(order_id, "manager", reason="fine").status_code == 202
    flow.finished(order_id)

    def complete(t: Trace) -> bool:
        """Every hop is in: the sidecars export a workflow's span when it ends."""
        return (
            all(
                t.named(name, service)
                for name, service in (
                    ("orchestration||order_workflow", "orders"),
                    ("orchestration||approval_workflow", "approvals"),
                    ("activity: advance_order", "orders"),
                    ("activity: track_instance", "approvals"),
                )
            )
            and len(t.named("POST /events/order-status", "notifier")) >= 4
            and len(t.roots()) == 1  # and the parent of every span that came
        )

    trace = jaeger_trace(flow, trace_id, complete)
    # One tree: everything descends from the request that placed the order.
    (root,) = trace.roots()
    assert (trace.service[root["spanID"]], root["operationName"]) == ("orders", "POST /orders")
    assert {"orders", "approvals", "notifier"} == set(trace.service.values())
    # Both workflows, each under the hop that started it, each activity once (no replays).
    order_wf = trace.named("orchestration||order_workflow", "orders")[0]
    approval_wf = trace.named("orchestration||approval_workflow", "approvals")[0]
    # The order ran two activities (advance_order): one asked for the approval, one ended it.
    advancing = trace.named("activity: advance_order", "orders")
    (took_request,) = trace.named("POST /events/approval-requests", "approvals")
    (outcome,) = trace.named("activity: publish_approval_outcome", "approvals")
    assert len(advancing) == 2 and all(trace.is_under(a, order_wf) for a in advancing)
    assert [trace.is_under(took_request, a) for a in advancing].count(True) == 1
    assert trace.is_under(approval_wf, took_request) and trace.is_under(outcome, approval_wf)
    # The notifier told the approver and the customer (4 statuses), each under what the
    # workflow published, each with its webhook call through the sidecar's binding.
    told = trace.named("POST /events/", "notifier")
    assert len(told) == 5
    for delivered in told:
        assert any(a["operationName"].startswith("activity: ") for a in trace.ancestors(delivered))
        assert any(trace.is_under(c, delivered) for c in trace.named("InvokeBinding", "notifier"))


def sidecar_metrics(stack: Stack, app: str) -> str:
    """What `app`'s sidecar serves on its metrics port (loopback, no token: Dapr's own)."""
    (daprd,) = [p for p in stack.procs if p.name == f"{app}-daprd"]
    port = daprd.args[daprd.args.index("--metrics-port") + 1]
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_apps_and_sidecars_serve_the_metrics_the_alerts_read(flow: Flow, stack: Stack) -> None:
    order = flow.place("1300.00")
    flow.pending(order.order_id)
    assert flow.decide(order.order_id, "manager", reason="ok").status_code == 202
    flow.finished(order.order_id)
    assert httpx.get(f"{flow.orders}/metrics").status_code == 401  # a token, like every route
    orders = samples(flow.http.get(f"{flow.orders}/metrics").text)
    approvals = samples(flow.http.get(f"{flow.approvals}/metrics").text)
    notifier = samples(flow.http.get(f"{flow.notifier}/metrics").text)
    assert orders[("orders_finished_total", frozenset({("outcome", "completed")}))] >= 1
    assert orders[("orders_received_total", frozenset())] >= 1
    decided = ("approval_decision_seconds_count", frozenset({("tier", "manager")}))
    assert approvals[decided] >= 1
    assert ("approvals_pending", frozenset({("tier", "manager")})) in approvals
    delivered = frozenset({("channel", "webhook"), ("result", "delivered")})
    assert notifier[("notifications_total", delivered)] >= 5
    took = frozenset({("topic", "orders"), ("verdict", "SUCCESS")})
    assert orders[("subscription_answers_total", took)] >= 1
    # The series names as Prometheus stores them (the Python parser would add _total to the
    # names of Dapr's counters, which end in _count).
    served = {
        line.split("{")[0].split(" ")[0]
        for app in ("orders", "approvals")
        for line in sidecar_metrics(stack, app).splitlines()
        if line and not line.startswith("#")
    }
    assert served >= DAPR_METRICS, DAPR_METRICS - served
