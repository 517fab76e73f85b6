"""A bare Dapr app for the benchmark's baselines: the SDK and nothing of this project.

Each figure's bare counterpart does the same Dapr work as ours with nothing of ours around it:

- `bench` (M6): a subscriber that records when each message arrives;
- `bench-orders` (M1, M2): each message schedules `bare_order`, which runs ACTIVITIES no-op
  activities (the activity count of an auto-approved order) and completes;
- `bench-decisions` and `bench-outcomes` (M3): the two hops of a decision. A decision raises
  `decision` into `bare_approval`, which publishes an outcome from an activity; the outcome
  raises `outcome` into `bare_decided`, which runs its activities and completes;
- `bare_waiting` (M4): waits for an event or a 3-day timer, as each of an order's two
  workflows does while an approver has not decided.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import uvicorn
from dapr.clients import DaprClient
from dapr.ext.fastapi import DaprApp
from dapr.ext.workflow import DaprWorkflowClient, WorkflowRuntime, when_any
from fastapi import FastAPI, Request

PUBSUB = "pubsub"
ACTIVITIES = 5
AFTER_OUTCOME = 3  # our order workflow after an approval: approved, fulfil, completed


def noop(ctx: Any, _: Any) -> None:
    return None


# One client for the app's life, as a real app (and ours) keeps one: a new gRPC channel per
# publish would make the baseline slower than it need be.
DAPR: dict[str, DaprClient] = {}


def publish(topic: str, message_id: str) -> None:
    DAPR["client"].publish_event(
        PUBSUB, topic, json.dumps({"id": message_id}), data_content_type="application/json"
    )


def publish_outcome(ctx: Any, order_id: str) -> None:
    publish("bench-outcomes", order_id)


def bare_order(ctx: Any, n: int) -> Generator[Any, Any, str]:
    for _ in range(n):
        yield ctx.call_activity(noop, input=None)
    return "done"


def bare_approval(ctx: Any, order_id: str) -> Generator[Any, Any, str]:
    yield ctx.wait_for_external_event("decision")
    yield ctx.call_activity(noop, input=None)  # ours records the decided view
    yield ctx.call_activity(publish_outcome, input=order_id)
    return "decided"


def bare_decided(ctx: Any, _: Any) -> Generator[Any, Any, str]:
    yield ctx.wait_for_external_event("outcome")
    for _ in range(AFTER_OUTCOME):
        yield ctx.call_activity(noop, input=None)
    return "done"


def bare_waiting(ctx: Any, _: Any) -> Generator[Any, Any, str]:
    timer = ctx.create_timer(ctx.current_utc_datetime + timedelta(days=3))
    yield when_any([ctx.wait_for_external_event("go"), timer])
    return "done"


def create_app() -> FastAPI:
    arrivals: dict[str, float] = {}
    client: DaprWorkflowClient | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal client
        runtime = WorkflowRuntime()
        for wf in (bare_order, bare_approval, bare_decided, bare_waiting):
            runtime.register_workflow(wf)
        for act in (noop, publish_outcome):
            runtime.register_activity(act)
        runtime.start()
        client = DaprWorkflowClient()
        DAPR["client"] = DaprClient()
        yield
        DAPR.pop("client").close()
        runtime.shutdown()

    app = FastAPI(lifespan=lifespan)
    dapr_app = DaprApp(app)

    def message_id(event: dict[str, Any]) -> str:
        data = event["data"]  # the driver sends orders; this app's own messages carry an id
        return str(data.get("id") or data["order_id"])

    @dapr_app.subscribe(pubsub=PUBSUB, topic="bench", route="/bench")
    async def on_bench(request: Request) -> dict[str, str]:
        arrivals[message_id(await request.json())] = time.time()
        return {"status": "SUCCESS"}

    @dapr_app.subscribe(pubsub=PUBSUB, topic="bench-orders", route="/bench-orders")
    def on_order(event: dict[str, Any]) -> dict[str, str]:
        assert client is not None
        oid = message_id(event)
        client.schedule_new_workflow(bare_order, input=ACTIVITIES, instance_id=f"bare-{oid}")
        return {"status": "SUCCESS"}

    @dapr_app.subscribe(pubsub=PUBSUB, topic="bench-decisions", route="/bench-decisions")
    def on_decision(event: dict[str, Any]) -> dict[str, str]:
        assert client is not None
        client.raise_workflow_event(f"bare-approval-{message_id(event)}", "decision", data=None)
        return {"status": "SUCCESS"}

    @dapr_app.subscribe(pubsub=PUBSUB, topic="bench-outcomes", route="/bench-outcomes")
    def on_outcome(event: dict[str, Any]) -> dict[str, str]:
        assert client is not None
        client.raise_workflow_event(f"bare-decided-{message_id(event)}", "outcome", data=None)
        return {"status": "SUCCESS"}

    @app.post("/decide/{order_id}")
    def decide(order_id: str) -> dict[str, str]:
        """What an approver's POST does, bare: publish the decision."""
        publish("bench-decisions", order_id)
        return {"status": "published"}

    @app.post("/pending/{order_id}")
    def pending(order_id: str) -> dict[str, str]:
        """An order waiting for its decision, bare: its two waiting workflows."""
        assert client is not None
        client.schedule_new_workflow(bare_decided, instance_id=f"bare-decided-{order_id}")
        client.schedule_new_workflow(
            bare_approval, input=order_id, instance_id=f"bare-approval-{order_id}"
        )
        return {"status": "waiting"}

    @app.post("/waiting/{order_id}")
    def waiting(order_id: str) -> dict[str, str]:
        """Two workflows that wait as an order's two do, each on an event and a timer."""
        assert client is not None
        for part in ("a", "b"):
            client.schedule_new_workflow(bare_waiting, instance_id=f"bare-wait-{order_id}-{part}")
        return {"status": "waiting"}

    @app.get("/arrival/{message_id}")
    def arrival(message_id: str) -> dict[str, float | None]:
        return {"at": arrivals.get(message_id)}

    # async: answered on the event loop, so a threadpool busy with a burst of deliveries does
    # not make the sidecar's health probe time out (it then stalls the app's workflows).
    @app.get("/healthz")
    @app.get("/readyz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    uvicorn.run(
        create_app(), host="127.0.0.1", port=int(os.environ["APP_PORT"]), log_level="warning"
    )
