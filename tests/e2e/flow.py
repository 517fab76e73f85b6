"""What an e2e scenario does, in the words of the flow: place, decide, watch.

With replicas, each call goes to the next replica of the app that is running, as a Kubernetes
Service spreads calls over the ready pods; what the apps logged is read from every replica.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from contracts.envelope import CONTENT_TYPE, wrap
from contracts.messages import Message, OrderPlaced
from devstack.runfile import App
from devstack.stack import Stack
from tests import resp
from tests.fakes import bearer, signing_app
from tests.stack import eventually, unique


class Flow:
    def __init__(self, stack: Stack, http: httpx.Client) -> None:
        self.stack, self.http = stack, http
        self._turns: dict[str, Iterator[App]] = {}

    def replica(self, app_id: str) -> App:
        """The app's next replica that is running (its app and its sidecar), round robin;
        the first one when none is."""
        replicas = self.stack.app_replicas[app_id]
        turn = self._turns.setdefault(app_id, itertools.cycle(replicas))
        for _ in replicas:
            candidate = next(turn)
            if all(self._running(n) for n in (candidate.name, f"{candidate.name}-daprd")):
                return candidate
        return replicas[0]

    def _running(self, name: str) -> bool:
        watch = self.stack.supervisor.watches.get(name)
        return watch is not None and watch.proc.alive() and not watch.proc.stopped()

    @property
    def orders(self) -> str:
        return self.replica("orders").app_url

    @property
    def approvals(self) -> str:
        return self.replica("approvals").app_url

    @property
    def notifier(self) -> str:
        return self.replica("notifier").app_url

    def publish(
        self,
        message: Message | bytes,
        topic: str,
        via: str = "orders",
        raw: bool = False,
        signed: bool = True,
    ) -> None:
        """Publish through an app's sidecar, as a shop or a script would.

        `raw` skips the sidecar's CloudEvent handling, so any bytes reach the topic as they are.
        What a service signs is signed with that service's key in this stack (the test plays
        that service) unless `signed` is False (the test plays a forger).
        """
        signer = None
        if signed and not isinstance(message, bytes) and (app := signing_app(message)):
            signer = self.stack.own_secrets.signer(app)
        body = message if isinstance(message, bytes) else wrap(message, "e2e", signer)
        sidecar = self.replica(via)
        resp = self.http.post(
            f"{sidecar.dapr_url}/v1.0/publish/pubsub/{topic}",
            content=body,
            params={"metadata.rawPayload": "true"} if raw else None,
            headers={
                "content-type": "application/json" if raw else CONTENT_TYPE,
                **sidecar.dapr_headers,
            },
        )
        assert resp.status_code == 204, resp.text

    def order_message(
        self,
        amount: str,
        customer: str = "cust-1",
        order_id: str | None = None,
        currency: str = "EUR",
    ) -> OrderPlaced:
        return OrderPlaced(
            order_id=order_id or unique("o"),
            customer_id=customer,
            amount=amount,
            currency=currency,
            placed_at=datetime.now(UTC),
        )

    def place(
        self,
        amount: str,
        customer: str = "cust-1",
        order_id: str | None = None,
        currency: str = "EUR",
    ) -> OrderPlaced:
        order = self.order_message(amount, customer, order_id, currency)
        self.publish(order, "orders")
        return order

    def order(self, order_id: str) -> dict[str, Any] | None:
        resp = self.http.get(f"{self.orders}/orders/{order_id}")
        return resp.json() if resp.status_code == 200 else None

    def finished(self, order_id: str, timeout: float = 45) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            state = self.order(order_id)
            return (
                state
                if state and state["workflow_status"] in ("COMPLETED", "FAILED", "TERMINATED")
                else None
            )

        state = eventually(done, timeout, f"order {order_id} to finish")
        assert state["workflow_status"] == "COMPLETED", state
        return state

    def approval(self, order_id: str) -> dict[str, Any] | None:
        resp = self.http.get(f"{self.approvals}/approvals/{order_id}")
        return resp.json() if resp.status_code == 200 else None

    def pending(self, order_id: str, tier: str = "manager", timeout: float = 30) -> dict[str, Any]:
        return eventually(
            lambda: (
                (a := self.approval(order_id))
                and a["status"] == "pending"
                and a["tier"] == tier
                and a
            ),
            timeout,
            f"approval of {order_id} pending at the {tier} stage",
        )

    def decide(
        self, order_id: str, who: str = "manager", approved: bool = True, reason: str = ""
    ) -> httpx.Response:
        """Post a decision as a development principal ("manager" is bob, "vp" is val)."""
        return self.http.post(
            f"{self.approvals}/approvals/{order_id}/decisions",
            json={"approved": approved, "reason": reason},
            headers=bearer(who),
        )

    def answers(self, app: str, topic: str) -> list[tuple[str, str, str]]:
        """Every delivery on `topic` that `app` answered, oldest first, from the logs of all
        its replicas (JSON lines), where the subscription helper writes one message per
        delivery: `topic T event ID -> VERDICT (reason)`. (replica, event id, verdict)."""
        line = re.compile(rf"topic {re.escape(topic)} event (\S+) -> (.+)$")
        found = []
        for replica in self.stack.replica_names(app):
            log = log_lines(self.stack.log_of(replica).read_text(errors="replace"))
            found += [(at, replica, *m.groups()) for at, msg in log if (m := line.search(msg))]
        return [(replica, event, verdict) for _, replica, event, verdict in sorted(found)]

    def deliveries(self, app: str, topic: str, event_id: str, expect: int) -> list[str]:
        """What `app` (any of its replicas) answered to each delivery of one event on `topic`
        (oldest first), once it answered at least `expect` of them."""

        def answered() -> list[str] | None:
            got = [v for _, event, v in self.answers(app, topic) if event == event_id]
            return got if len(got) >= expect else None

        return eventually(answered, 30, f"{app} to answer {expect} deliveries of {event_id}")

    def unacknowledged(self, topic: str, group: str) -> int:
        """How many messages of `topic` the consumer group `group` (an app id) has been handed
        and not acknowledged: Redis's own count (XPENDING)."""
        got = resp.command(
            self.stack.redis_port, self.stack.own_secrets.redis_password, "XPENDING", topic, group
        )
        return int(got[0])

    def unread(self, topic: str, group: str) -> int | None:
        """How many messages of `topic` the consumer group `group` has not been handed yet
        (Redis's `lag` in XINFO GROUPS); None when Redis cannot tell, 0 when the group or the
        stream does not exist (nothing was ever published to it)."""
        try:
            port, password = self.stack.redis_port, self.stack.own_secrets.redis_password
            groups = resp.command(port, password, "XINFO", "GROUPS", topic)
        except resp.RedisError as exc:
            if "no such key" in str(exc):
                return 0
            raise
        for fields in groups:
            info = dict(zip(fields[::2], fields[1::2], strict=True))
            if info["name"] == group:
                return None if info.get("lag") is None else int(info["lag"])
        return 0

    def fulfilment(self, order_id: str) -> dict[str, Any] | None:
        """The fulfilment record the orders app wrote, read from its state store through its
        sidecar (None while there is none)."""
        orders = self.replica("orders")
        resp = self.http.get(
            f"{orders.dapr_url}/v1.0/state/statestore/fulfilment:{order_id}",
            headers={"Authorization": "", **orders.dapr_headers},
        )
        assert resp.status_code in (200, 204), resp.text
        return resp.json() if resp.status_code == 200 else None  # type: ignore[no-any-return]

    def notifications(self, order_id: str) -> list[dict[str, Any]]:
        """What the notifier recorded for the order; asked again while it cannot answer (its
        sidecar restarting answers 503), so an error body is never read as the records."""

        def answered() -> tuple[list[dict[str, Any]]] | None:  # a tuple: [] is an answer too
            try:
                got = self.http.get(f"{self.notifier}/notifications", params={"order_id": order_id})
            except httpx.TransportError:  # the notifier itself restarting
                return None
            return (got.json(),) if got.status_code == 200 else None

        return eventually(answered, 60, f"the notifier's records of {order_id}")[0]

    def customer_statuses(
        self, order_id: str, until: str, timeout: float = 20, expect: int | None = None
    ) -> list[str]:
        """The statuses the customer was told, in the order they happened (by their time),
        once `until` and at least `expect` of them arrived (delivery is unordered)."""

        def seen() -> list[str] | None:
            notes = sorted(
                (n for n in self.notifications(order_id) if n["audience"] == "customer"),
                key=lambda n: datetime.fromisoformat(
                    n["at"]
                ),  # not the text: 10:00:00.5Z < 10:00:00Z
            )
            got = [n["id"].removeprefix(f"{order_id}-") for n in notes]
            return got if until in got and len(got) >= (expect or 0) else None

        return eventually(seen, timeout, f"customer told {until!r} about {order_id}")


def log_lines(text: str) -> list[tuple[str, str]]:
    """(time, message) of each line of an app's log: a JSON line's `time` and `message`; any
    other line (devstack's restart marks, or a line still being written) as it is."""
    lines = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
            lines.append((str(record["time"]), str(record["message"])))
        except (ValueError, KeyError, TypeError):
            lines.append((line[:23], line))
    return lines
