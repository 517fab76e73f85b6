"""M6's "ours": one topic through this project's subscription helper, and nothing else.

`plumbing.subscriptions.subscribe` is what every service's subscriptions go through: the app
token check, the CloudEvent envelope, the message model and its money limits, the handler in
the threadpool, the SUCCESS/RETRY/DROP answer, its count and its log line (JSON, at INFO, as
every app writes them: build_app's logging and metrics). The handler here only records when the
order arrived, as bench/baseline_app.py's bare subscriber does on `bench`.
"""

from __future__ import annotations

import os
import time

import uvicorn
from dapr.ext.fastapi import DaprApp
from fastapi import FastAPI

from contracts.messages import OrderPlaced
from plumbing.gateway import Gateway
from plumbing.logs import configure_logging
from plumbing.metrics import Metrics
from plumbing.settings import ServiceSettings
from plumbing.subscriptions import Answer, subscribe

TOPIC = "bench-ours"


def create_app() -> FastAPI:
    settings = ServiceSettings.from_env("benchours")
    configure_logging(settings.app_id, log_format=settings.log_format)
    arrivals: dict[str, float] = {}
    app = FastAPI()
    app.state.audit = None  # refusals are audited; nothing here is refused
    app.state.metrics = Metrics()

    def no_gateway() -> Gateway:
        raise RuntimeError("the benchmark's messages are never dropped")

    def arrived(order: OrderPlaced) -> Answer:
        arrivals[order.order_id] = time.time()
        return Answer.success()

    subscribe(DaprApp(app), no_gateway, settings, topic=TOPIC, model=OrderPlaced, handler=arrived)

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
