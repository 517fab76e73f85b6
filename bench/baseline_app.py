"""A bare Dapr app for the benchmark's baseline: the SDK and nothing of this project.

It records when each message on the `bench` topic arrives, and hosts `echo_workflow`, which
waits for one event, calls one no-op activity and completes.
"""

import os
import time
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from dapr.ext.fastapi import DaprApp
from dapr.ext.workflow import WorkflowRuntime
from fastapi import FastAPI, Request


def echo_workflow(ctx: Any, _: Any) -> Generator[Any, Any, str]:
    yield ctx.wait_for_external_event("go")
    yield ctx.call_activity(noop, input=None)
    return "done"


def noop(ctx: Any, _: Any) -> None:
    return None


def create_app() -> FastAPI:
    arrivals: dict[str, float] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = WorkflowRuntime()
        runtime.register_workflow(echo_workflow)
        runtime.register_activity(noop)
        runtime.start()
        yield
        runtime.shutdown()

    app = FastAPI(lifespan=lifespan)
    dapr_app = DaprApp(app)

    async def on_bench(request: Request) -> dict[str, str]:
        event = await request.json()
        arrivals[str(event["data"]["id"])] = time.time()
        return {"status": "SUCCESS"}

    dapr_app.subscribe(pubsub="pubsub", topic="bench", route="/bench")(on_bench)

    @app.get("/arrival/{message_id}")
    def arrival(message_id: str) -> dict[str, float | None]:
        return {"at": arrivals.get(message_id)}

    @app.get("/healthz")
    @app.get("/readyz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    uvicorn.run(
        create_app(), host="127.0.0.1", port=int(os.environ["APP_PORT"]), log_level="warning"
    )
