"""Pub/sub subscriptions that always answer Dapr on purpose: SUCCESS, RETRY or DROP.

A subscription parses the raw body itself (never FastAPI's 422, which Dapr would retry
forever), hands a validated message to a plain handler in the threadpool, and maps the outcome:

  handler returns Answer          -> that answer (Answer.refuse: DROP, and audited)
  BadEnvelope / BadPayload        -> DROP (the sidecar moves it to the dead-letter topic)
  Unverified (must be signed)     -> DROP, and audited: someone published what only a trusted
                                     service may (a forged decision or approval outcome)
  gateway.Transient               -> RETRY (the resiliency policy retries, then dead-letters)
  any other exception             -> RETRY, logged with its stack trace

Before answering DROP, the reason is written to the state store, so that when the message
comes back on the app's dead-letter topic the collector can say why (GET /deadletters).
"""

from __future__ import annotations

import base64
import functools
import logging
import operator
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from dapr.ext.fastapi import DaprApp
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from contracts.envelope import BadEnvelope, BadPayload, Unverified, load_json, unwrap
from contracts.messages import Message, MessageLimits
from contracts.signing import Verifier
from contracts.timestamps import rfc3339
from contracts.topics import dead_letter
from plumbing.audit import AuditLog, AuditUnavailable
from plumbing.auth import Reader
from plumbing.gateway import Gateway, GatewayError, Transient
from plumbing.logs import bound
from plumbing.metrics import Metrics
from plumbing.settings import ServiceSettings
from plumbing.state import update
from plumbing.web import require_app_token

log = logging.getLogger(__name__)
M = TypeVar("M", bound=Message)
DEAD_LETTERS_KEY = "deadletters"
DEAD_LETTERS_KEPT = 1000


class Verdict(StrEnum):
    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    reason: str = ""
    audited: bool = False  # a refusal someone should be able to find: in the audit log too

    @classmethod
    def success(cls, reason: str = "") -> Answer:
        return cls(Verdict.SUCCESS, reason)

    @classmethod
    def retry(cls, reason: str) -> Answer:
        return cls(Verdict.RETRY, reason)

    @classmethod
    def drop(cls, reason: str) -> Answer:
        return cls(Verdict.DROP, reason)

    @classmethod
    def refuse(cls, reason: str) -> Answer:
        """DROP, and audited (e.g. a conflicting duplicate: someone sent two different things
        under one id)."""
        return cls(Verdict.DROP, reason, audited=True)


Handler = Callable[[M], Answer]
GatewayRef = Callable[[], Gateway]
VerifierRef = Callable[[], Verifier]


def keys_of(app: Any, *signers: str) -> VerifierRef:
    """The public keys of these signing apps, as the app loaded them at startup."""

    def ref() -> Verifier:
        loaded: dict[str, Verifier] = app.state.verifiers
        return functools.reduce(operator.or_, (loaded[s] for s in signers))

    return ref


def _drop_key(app_id: str, topic: str, event_id: str) -> str:
    return f"dropped:{app_id}:{topic}:{event_id}"


def _lenient_id(body: bytes) -> str:
    try:
        raw = load_json(body)
    except ValueError:
        return "?"
    return str(raw.get("id", "?")) if isinstance(raw, dict) else "?"


def make_endpoint(
    topic: str,
    model: type[M],
    handler: Handler[M],
    gateway: GatewayRef,
    settings: ServiceSettings,
    signed_by: VerifierRef | None = None,
    limits: MessageLimits | None = None,
    signed_if: Callable[[M], bool] | None = None,
) -> Callable[[Request], Awaitable[JSONResponse]]:
    """The ASGI endpoint for one topic; separate from registration so tests can call it.

    With `signed_by`, every message must carry a valid signature by one of its keys (with
    `signed_if` too, every message for which it is true). Money is checked against `limits`
    (default: this app's policy); a signed message that another app already checked under its
    own policy is read with TRUSTED limits."""

    def record_drop(event_id: str, reason: str) -> None:
        try:
            gateway().state.put(
                _drop_key(settings.app_id, topic, event_id),
                {"reason": reason, "at": rfc3339(datetime.now(UTC))},
            )
        except GatewayError:  # the reason is in the log; dead-lettering must not wait on it
            log.warning("could not record why %s on %s was dropped", event_id, topic)

    def record_forgery(
        audit: AuditLog, caller: str, kind: str, outcome: str, target: str = topic
    ) -> None:
        """Audit a refused delivery (forged, or refused by its handler); a flood of them is
        counted per `caller`."""
        try:
            audit.append_refusal(
                caller,
                kind,
                actor="unknown caller",
                action=f"deliver {topic}",
                target=target,
                outcome=outcome,
            )
        except (AuditUnavailable, GatewayError):
            log.warning("could not audit a refused delivery on %s", topic)

    # Hoisted out of the delivery: settings and their policy are frozen, so the limits a
    # message is checked under are the same for every delivery on this topic.
    checked_under = limits or settings.policy.limits
    unmetered: list[Metrics] = []  # what an app without metrics counts into (nobody reads it)

    def metrics_of(request: Request) -> Metrics:
        metrics: Metrics | None = getattr(request.app.state, "metrics", None)
        if metrics is not None:  # build_app makes them
            return metrics
        if not unmetered:
            unmetered.append(Metrics())
        return unmetered[0]

    async def endpoint(request: Request) -> JSONResponse:
        audit: AuditLog = request.app.state.audit
        refused = require_app_token(request, settings.app_api_token)
        if refused is not None:
            caller = request.client.host if request.client else "unknown"
            await run_in_threadpool(
                record_forgery, audit, caller, "401", "refused 401: missing or wrong dapr-api-token"
            )
            return refused
        body = await request.body()
        event_id, kind = "?", "rejected"  # why a DROP is dropped, as a metric label
        order_id: str | None = None  # what the log lines are about, once known
        try:
            verifier = signed_by() if signed_by is not None else None
            event_id, message = unwrap(body, model, checked_under, verifier, signed_if)
        except Unverified as exc:
            event_id, answer, kind = exc.event_id, Answer.drop(str(exc)), "unsigned"
            # Came through the sidecar: whoever published it is unknown, so count per topic.
            await run_in_threadpool(
                record_forgery,
                audit,
                f"unsigned deliveries on {topic}",
                "unsigned",
                f"refused: {exc}",
                event_id,
            )
        except BadPayload as exc:
            event_id, answer, kind = exc.event_id, Answer.drop(str(exc)), "bad_payload"
        except BadEnvelope as exc:
            event_id, answer, kind = _lenient_id(body), Answer.drop(str(exc)), "bad_envelope"
        else:
            order_id = getattr(message, "order_id", None)
            try:
                with bound(order_id=order_id):
                    answer = await run_in_threadpool(handler, message)
            except Transient as exc:
                answer = Answer.retry(str(exc))
            except Exception:
                log.exception(
                    "topic %s: handler failed on event %s; asking for a retry", topic, event_id
                )
                answer = Answer.retry("unexpected error")
        metrics = metrics_of(request)
        metrics.answered(topic, answer.verdict.value)
        if answer.verdict is Verdict.DROP:
            metrics.dead_letter(topic, "refused" if answer.audited else kind)
            await run_in_threadpool(record_drop, event_id, answer.reason)
        if answer.audited:  # also from whoever holds a sidecar token: count per topic
            await run_in_threadpool(
                record_forgery,
                audit,
                f"refused deliveries on {topic}",
                "refused",
                f"refused: {answer.reason}",
                event_id,
            )
        level = logging.INFO if answer.verdict is Verdict.SUCCESS else logging.WARNING
        if log.isEnabledFor(level):  # the line and its ids are built only to be written
            with bound(order_id=order_id):
                log.log(
                    level,
                    "topic %s event %s -> %s%s",
                    topic,
                    event_id,
                    answer.verdict,
                    f" ({answer.reason})" if answer.reason else "",
                )
        return JSONResponse({"status": answer.verdict.value, "reason": answer.reason})

    endpoint.__name__ = f"on_{topic.replace('-', '_')}"
    return endpoint


def subscribe(
    dapr_app: DaprApp,
    gateway: GatewayRef,
    settings: ServiceSettings,
    *,
    topic: str,
    model: type[M],
    handler: Handler[M],
    signed_by: VerifierRef | None = None,
    limits: MessageLimits | None = None,
    signed_if: Callable[[M], bool] | None = None,
) -> None:
    """Register a subscription to `topic`, its dead-letter topic, and the collector for it."""
    endpoint = make_endpoint(topic, model, handler, gateway, settings, signed_by, limits, signed_if)
    dlq = dead_letter(topic, settings.app_id)
    dapr_app.subscribe(
        pubsub=settings.pubsub, topic=topic, route=f"/events/{topic}", dead_letter_topic=dlq
    )(endpoint)
    collector = make_dead_letter_endpoint(topic, gateway, settings)
    # rawPayload: the sidecar hands over the dead letter's original bytes (as data_base64),
    # even when they were never a CloudEvent it could parse.
    dapr_app.subscribe(
        pubsub=settings.pubsub,
        topic=dlq,
        route=f"/deadletters/{topic}",
        metadata={"rawPayload": "true"},
    )(collector)


def make_dead_letter_endpoint(
    topic: str, gateway: GatewayRef, settings: ServiceSettings
) -> Callable[[Request], Awaitable[JSONResponse]]:
    """Keep what came back on the dead-letter topic, with the reason recorded at DROP time."""

    def keep(delivered: bytes) -> None:
        body = _original_bytes(delivered)
        try:
            envelope = load_json(body)
        except ValueError:
            envelope = {}
        envelope = envelope if isinstance(envelope, dict) else {}
        event_id = str(envelope.get("id", "?"))
        dropped, _ = gateway().state.get(_drop_key(settings.app_id, topic, event_id))
        if dropped is None:  # retries ran out, or the sidecar could not parse it
            gateway().metrics.dead_letter(topic, "undelivered")
        record = {
            "topic": topic,
            "event_id": event_id,
            "type": envelope.get("type"),
            "source": envelope.get("source"),
            "reason": (dropped or {}).get(
                "reason", "not a CloudEvent the sidecar could parse, or retries ran out"
            ),
            "received_at": rfc3339(datetime.now(UTC)),
            "body": body[:4096].decode("utf-8", "replace"),
        }

        def add(items: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
            items = items or []
            if any(
                i["event_id"] == event_id and i["topic"] == topic and event_id != "?" for i in items
            ):
                return None
            return [*items, record][-DEAD_LETTERS_KEPT:]

        update(gateway().state, DEAD_LETTERS_KEY, add)
        log.warning("dead letter on %s: %s (%s)", topic, event_id, record["reason"])

    async def collector(request: Request) -> JSONResponse:
        refused = require_app_token(request, settings.app_api_token)
        if refused is not None:
            return refused
        body = await request.body()
        try:
            await run_in_threadpool(keep, body)
        except Transient as exc:
            return JSONResponse({"status": Verdict.RETRY.value, "reason": str(exc)})
        return JSONResponse({"status": Verdict.SUCCESS.value, "reason": ""})

    collector.__name__ = f"dead_letters_of_{topic.replace('-', '_')}"
    return collector


def _original_bytes(delivered: bytes) -> bytes:
    """Unwrap the raw-payload envelope the sidecar puts around a dead letter."""
    try:
        outer = load_json(delivered)
    except ValueError:
        return delivered
    if isinstance(outer, dict) and isinstance(outer.get("data_base64"), str):
        try:
            return base64.b64decode(outer["data_base64"])
        except ValueError:
            return delivered
    return delivered


def dead_letters_router(gateway: GatewayRef) -> APIRouter:
    """GET /deadletters: what this app refused, newest last, with the reason."""
    router = APIRouter(tags=["dead letters"])

    @router.get("/deadletters")
    def list_dead_letters(
        _reader: Reader, topic: str | None = Query(None, max_length=100)
    ) -> list[dict[str, Any]]:
        items, _ = gateway().state.get(DEAD_LETTERS_KEY)
        return [i for i in (items or []) if topic is None or i["topic"] == topic]

    return router
