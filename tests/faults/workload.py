"""A seeded workload over every path an order can take, driven through topics and HTTP as
shops and approvers would, each step retried until the system takes it (a fault may be under
way: a sidecar down, an app hung). Every order has a known id and a known expected end."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from contracts.messages import DecisionSubmitted
from tests.e2e.flow import Flow

# path -> (amount, the order record's end status); "malformed" ends as a dead letter.
PATHS: dict[str, tuple[str, str]] = {
    "auto": ("120.00", "completed"),
    "approve": ("1500.00", "completed"),
    "reject": ("1600.00", "rejected"),
    "escalate_then_approve": ("2500.00", "completed"),
    "expire": ("7000.00", "expired"),
    "decision_first": ("1700.00", "completed"),
    "duplicate_order": ("130.00", "completed"),
    "duplicate_decision": ("1800.00", "completed"),
    "malformed": ("", "dead-lettered"),
}


@dataclass
class Planned:
    order_id: str
    path: str
    start_at: float  # seconds after the run began

    @property
    def amount(self) -> str:
        return PATHS[self.path][0]

    @property
    def expected(self) -> str:
        return PATHS[self.path][1]

    @property
    def needs_a_person(self) -> bool:
        """Whether the order's amount needs an approver (an approval workflow); the paths'
        amounts under 500 are approved by the policy alone."""
        return self.path not in ("auto", "duplicate_order", "malformed")


@dataclass
class Plan:
    seed: int
    orders: list[Planned]

    @classmethod
    def make(cls, seed: int, count: int, spread_s: float, tag: str = "") -> Plan:
        """`tag` tells runs of one seed apart (the webhook sink outlives a stack)."""
        rng = random.Random(seed)
        paths = [p for _ in range(count // len(PATHS) + 1) for p in PATHS][:count]
        rng.shuffle(paths)
        run = f"f{seed}{tag}"
        orders = [
            Planned(f"{run}-{n:03d}-{path.replace('_', '')}", path, rng.uniform(0, spread_s))
            for n, path in enumerate(paths)
        ]
        return cls(seed, sorted(orders, key=lambda o: o.start_at))


@dataclass
class Driver:
    """Plays the shop and the approvers; every call is retried through faults."""

    flow: Flow
    log: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, plan: Plan, workers: int = 12) -> None:
        began = time.monotonic()

        def one(o: Planned) -> None:
            time.sleep(max(0.0, o.start_at - (time.monotonic() - began)))
            getattr(self, o.path)(o)

        with ThreadPoolExecutor(workers) as pool:
            for done in [pool.submit(one, o) for o in plan.orders]:
                done.result()

    def note(self, text: str) -> None:
        with self._lock:
            self.log.append(f"{datetime.now(UTC):%H:%M:%S.%f} {text}")

    def retry(self, what: str, attempt: Callable[[], bool], timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if attempt():
                    return
            except (httpx.HTTPError, AssertionError, OSError) as exc:
                self.note(f"{what}: {type(exc).__name__}: {str(exc)[:120]}; again")
            time.sleep(0.5)
        raise AssertionError(f"{what}: not taken within {timeout}s")

    # -- what a shop does
    def publish_order(self, o: Planned) -> None:
        message = self.flow.order_message(o.amount, order_id=o.order_id)
        self.retry(f"publish {o.order_id}", lambda: self._publish(message, "orders") or True)

    def _publish(self, message: Any, topic: str, via: str = "orders", raw: bool = False) -> None:
        self.flow.publish(message, topic, via=via, raw=raw)

    # -- what an approver does
    def decide(self, o: Planned, approved: bool, tier: str = "manager") -> None:
        """Decide each stage while it is pending, until the approval ends. A decision is taken
        in (202) and applied later: if a fault held it up past the manager's deadline, the
        approval escalated and the workflow ignored it, so the VP decides the same way, as
        people would who see it escalated."""
        decided: set[int] = set()

        def attempt() -> bool:
            view = self.flow.approval(o.order_id)
            if not view or view["status"] != "pending":
                return bool(view)  # ended (by this decision, or an earlier try's)
            if view["stage"] in decided:
                return False  # taken in; wait for it to be applied
            who = "vp" if view["tier"] == "vp" or tier == "vp" else "manager"
            resp = self.flow.decide(o.order_id, who, approved=approved, reason="fault tier")
            self.note(f"decide {o.order_id} stage {view['stage']} as {who}: {resp.status_code}")
            if resp.status_code == 202:
                decided.add(view["stage"])
            return False

        self.retry(f"decide {o.order_id}", attempt)

    def wait_escalated(self, o: Planned) -> None:
        def attempt() -> bool:
            view = self.flow.approval(o.order_id)
            return bool(view and view["tier"] == "vp" and view["status"] == "pending")

        self.retry(f"escalation of {o.order_id}", attempt)

    # -- the paths
    def auto(self, o: Planned) -> None:
        self.publish_order(o)

    def approve(self, o: Planned) -> None:
        self.publish_order(o)
        self.decide(o, approved=True)

    def reject(self, o: Planned) -> None:
        self.publish_order(o)
        self.decide(o, approved=False)

    def escalate_then_approve(self, o: Planned) -> None:
        self.publish_order(o)
        self.wait_escalated(o)
        self.decide(o, approved=True, tier="vp")

    def expire(self, o: Planned) -> None:
        self.publish_order(o)

    def decision_first(self, o: Planned) -> None:
        decision = self._decision(o)
        self.retry(f"early decision {o.order_id}", lambda: self._publish_decision(decision))
        self.publish_order(o)

    def duplicate_order(self, o: Planned) -> None:
        self.publish_order(o)
        self.publish_order(o)

    def duplicate_decision(self, o: Planned) -> None:
        self.publish_order(o)
        self.retry(
            f"approval of {o.order_id}",
            lambda: bool((v := self.flow.approval(o.order_id)) and v["status"] == "pending"),
        )
        decision = self._decision(o)
        for _ in range(2):
            self.retry(f"decision of {o.order_id}", lambda: self._publish_decision(decision))

    def malformed(self, o: Planned) -> None:
        junk = json.dumps({"order_id": o.order_id, "amount": "lots"}).encode()
        self.retry(f"junk {o.order_id}", lambda: self._publish(junk, "orders", raw=True) or True)

    def _decision(self, o: Planned) -> DecisionSubmitted:
        return DecisionSubmitted(
            decision_id=f"d-{o.order_id}-{uuid.uuid4().hex[:6]}",
            order_id=o.order_id,
            approved=True,
            approver_id="val",
            approver_role="vp",
            decided_at=datetime.now(UTC),
        )

    def _publish_decision(self, decision: DecisionSubmitted) -> bool:
        self._publish(decision, "decisions", via="approvals")
        return True
