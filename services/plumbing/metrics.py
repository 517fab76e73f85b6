"""The business metrics an app serves on /metrics (Prometheus text format).

One `Metrics` per app, with a registry of its own (never the client's global one), carried by
the app's Gateway so that every handler and activity that already gets the gateway can count.
Counting happens where a thing happens once: in activities (a workflow's replay never runs
them again) and in subscription handlers, never in workflow code.

Labels are small, fixed sets (a topic, a tier, a channel, a verdict, a reason *kind*), never an
id or a free-text reason, so a series count stays bounded whatever the traffic.

The gauges of pending and overdue approvals are read from the approvals read model when
Prometheus scrapes (`ReadModelGauges`), so they are right after a restart too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from plumbing.auth import Reader

log = logging.getLogger(__name__)

# Decision time: minutes to days (the manager deadline is 3 days, the VP's 5).
DECISION_BUCKETS = (1, 10, 60, 300, 1800, 3600, 4 * 3600, 86400, 3 * 86400, 5 * 86400, 10 * 86400)
# Why a message went to a dead-letter topic: a reason kind, not the reason's text.
DEAD_LETTER_REASONS = (
    "bad_envelope",
    "bad_payload",
    "unsigned",
    "refused",
    "rejected",
    "undelivered",
)
FINISHED = ("completed", "rejected", "expired", "cancelled", "failed")


class Metrics:
    """The app's instruments, registered in `registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.orders_received = Counter(
            "orders_received", "Orders accepted into a workflow", registry=r
        )
        self.orders_finished = Counter(
            "orders_finished", "Orders that reached a final status", ["outcome"], registry=r
        )
        self.decision_seconds = Histogram(
            "approval_decision_seconds",
            "Time from an approval's request to an approver's decision (workflow time)",
            ["tier"],
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.escalations = Counter(
            "approval_escalations", "Approvals escalated to the next stage", ["to_tier"], registry=r
        )
        self.dead_letters = Counter(
            "dead_letters",
            "Messages sent to a dead-letter topic, by topic and reason kind",
            ["topic", "reason"],
            registry=r,
        )
        self.subscription_answers = Counter(
            "subscription_answers",
            "Answers to the sidecar's deliveries, by topic and verdict",
            ["topic", "verdict"],
            registry=r,
        )
        self._answers: dict[tuple[str, str], Counter] = {}
        self.notifications = Counter(
            "notifications",
            "Notification deliveries by channel and result (delivered, failed)",
            ["channel", "result"],
            registry=r,
        )
        self.bulk_jobs = Counter(
            "bulk_jobs",
            "Bulk jobs finished, by action and outcome",
            ["action", "outcome"],
            registry=r,
        )
        self.bulk_job_instances = Counter(
            "bulk_job_instances",
            "Instances a bulk job has handled, by action and result (progress)",
            ["action", "result"],
            registry=r,
        )

    def order_status(self, status: str) -> None:
        """Count an order status change: received, or a final outcome."""
        if status == "received":
            self.orders_received.inc()
        elif status in FINISHED:
            self.orders_finished.labels(outcome=status).inc()

    def answered(self, topic: str, verdict: str) -> None:
        """Count an answer to a delivery. The labelled child is kept: `labels()` costs more
        than the count itself, and this runs once per delivery."""
        child = self._answers.get((topic, verdict))
        if child is None:  # two deliveries racing here get the same child from the client
            child = self.subscription_answers.labels(topic=topic, verdict=verdict)
            self._answers[(topic, verdict)] = child
        child.inc()

    def dead_letter(self, topic: str, reason: str) -> None:
        self.dead_letters.labels(topic=topic, reason=reason).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


def result_kind(result: str) -> str:
    """A bulk job's per-instance result as a label: its first word ("failed: ..." -> failed)."""
    return result.split(":", 1)[0].split(" ", 1)[0] or "unknown"


class ReadModelGauges(Collector):
    """Pending and overdue approvals by tier, read from the approvals index at scrape time."""

    def __init__(self, read_index: Callable[[], dict[str, Any] | None]) -> None:
        self._read_index = read_index

    def describe(self) -> Iterator[Metric]:
        return iter(())  # series are known only at scrape time

    def collect(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "approvals_pending", "Approvals waiting for a decision", labels=["tier"]
        )
        overdue = GaugeMetricFamily(
            "approvals_overdue", "Pending approvals past their due time", labels=["tier"]
        )
        try:
            index = self._read_index() or {}
        except Exception as exc:  # a scrape must answer; the gauges are simply absent
            log.warning("approvals gauges not read: %s", exc)
            return
        for tier, counts in waiting_by_tier(index, datetime.now(UTC)).items():
            pending.add_metric([tier], counts["pending"])
            overdue.add_metric([tier], counts["overdue"])
        yield pending
        yield overdue


def waiting_by_tier(index: dict[str, Any], now: datetime) -> dict[str, dict[str, int]]:
    """Pending and overdue approvals by tier, from the approvals index (approvals.readmodel)."""
    counts = {t: {"pending": 0, "overdue": 0} for t in ("manager", "vp")}
    for line in index.values():
        if line.get("status") != "pending":
            continue
        tier = counts.setdefault(str(line.get("tier")), {"pending": 0, "overdue": 0})
        tier["pending"] += 1
        if datetime.fromisoformat(line["due_at"]) < now:
            tier["overdue"] += 1
    return dict(sorted(counts.items()))


def metrics_router(metrics: Metrics) -> APIRouter:
    """GET /metrics: the app's metrics, for any caller with a token (Prometheus scrapes with a
    viewer's bearer token): they name topics and counts, nothing a stranger should map."""
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", response_class=Response)
    def serve_metrics(_reader: Reader) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router
