"""Pub/sub subscriptions that always answer Dapr on purpose: SUCCESS, RETRY or DROP.

A subscription parses the raw body itself (never FastAPI's 422, which Dapr would retry
forever), hands a validated message to a plain handler in the threadpool, and maps the outcome:

  handler returns Answer          -> that answer
  BadEnvelope / BadPayload        -> DROP (the sidecar moves it to the dead-letter topic)
  gateway.Transient               -> RETRY (the resiliency policy retries, then dead-letters)
  any other exception             -> RETRY, logged with its stack trace
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from dapr.ext.fastapi import DaprApp
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from common.cloudevents import BadEnvelope, BadPayload, unwrap
from common.gateway import Transient
from common.messages import Message, MessageLimits
from common.topics import dead_letter
from common.web import require_app_token

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)


class Verdict(StrEnum):
    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    reason: str = ""

    @classmethod
    def success(cls, reason: str = "") -> Answer:
        return cls(Verdict.SUCCESS, reason)

    @classmethod
    def retry(cls, reason: str) -> Answer:
        return cls(Verdict.RETRY, reason)

    @classmethod
    def drop(cls, reason: str) -> Answer:
        return cls(Verdict.DROP, reason)


Handler = Callable[[M], Answer]


def route_for(topic: str) -> str:
    return f"/events/{topic}"


def make_endpoint(
    topic: str, model: type[M], handler: Handler[M], limits: Callable[[], MessageLimits],
    app_token: str | None,
) -> Callable[[Request], object]:
    """The ASGI endpoint for one topic; separate from registration so tests can call it."""

    async def endpoint(request: Request) -> JSONResponse:
        refused = require_app_token(request, app_token)
        if refused is not None:
            return refused
        body = await request.body()
        event_id = "?"
        try:
            event_id, message = unwrap(body, model, limits())
        except (BadEnvelope, BadPayload) as exc:
            answer = Answer.drop(str(exc))
        else:
            try:
                answer = await run_in_threadpool(handler, message)
            except Transient as exc:
                answer = Answer.retry(str(exc))
            except Exception:
                log.exception("topic %s: handler failed on event %s; asking for a retry",
                              topic, event_id)
                answer = Answer.retry("unexpected error")
        level = logging.INFO if answer.verdict is Verdict.SUCCESS else logging.WARNING
        log.log(level, "topic %s event %s -> %s%s", topic, event_id, answer.verdict,
                f" ({answer.reason})" if answer.reason else "")
        return JSONResponse({"status": answer.verdict.value, "reason": answer.reason})

    endpoint.__name__ = f"on_{topic.replace('-', '_')}"
    return endpoint


def subscribe(
    dapr_app: DaprApp, *, pubsub: str, topic: str, model: type[M], handler: Handler[M],
    limits: Callable[[], MessageLimits], app_token: str | None = None,
) -> None:
    """Register a subscription to `topic` with its dead-letter topic."""
    endpoint = make_endpoint(topic, model, handler, limits, app_token)
    dapr_app.subscribe(
        pubsub=pubsub, topic=topic, route=route_for(topic), dead_letter_topic=dead_letter(topic),
    )(endpoint)
