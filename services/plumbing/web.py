"""HTTP plumbing every service shares: body limit, app-token check, health, error mapping."""

from __future__ import annotations

import hmac
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plumbing.audit import AuditUnavailable
from plumbing.gateway import Gateway
from plumbing.health import Readiness

log = logging.getLogger(__name__)


def get_gateway(request: Request) -> Gateway:
    """The app's gateway (opened by the lifespan), as a route dependency."""
    return request.app.state.gateway  # type: ignore[no-any-return]


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


class InvalidInput(ValueError):
    """Input a route could not accept; answered 422 with the message."""


class RequestId:
    """Give every request an id (the caller's `x-request-id`, or a new one), kept in
    `request.state.request_id` for the audit log and sent back on the response. Plain ASGI:
    Starlette's `@app.middleware("http")` runs every request through a task group, which cost
    the notifier a tenth of its CPU per delivery."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"")
        rid = given.decode("latin-1")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        await self.app(scope, receive, with_id)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413 (audited), before the app reads them.

    A declared Content-Length is refused at once. A chunked body has none: it is read here, up
    to the limit, and handed on from memory, so it meets the same 413 rather than the 400 that
    FastAPI makes of any error raised while it reads a body."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, scope)
            return
        messages: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client went away
                break
            seen += len(message.get("body", b""))
            if seen > self.limit:
                await self._refuse(send, scope)
                return
            if not message.get("more_body", False):
                break
        pending = iter(messages)

        async def replay() -> Message:
            # The body from memory, then the client's own messages (a disconnect).
            return next(pending, None) or await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, scope: Scope | None = None) -> None:
        if scope is not None and scope.get("method") in ("POST", "PUT", "PATCH", "DELETE"):
            await run_in_threadpool(self._audit, scope)
        body = b'{"detail": "request body is larger than %d bytes"}' % self.limit
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _audit(self, scope: Scope) -> None:
        """A refused mutation is audited like any other (the caller is not known yet, so a
        flood of them is rate-limited per client address)."""
        audit_log = getattr(getattr(scope.get("app"), "state", None), "audit", None)
        if audit_log is None:
            return
        client = scope.get("client")
        try:
            audit_log.append_refusal(
                client[0] if client else "unknown",
                "413",
                actor="unknown caller",
                action=f"{scope['method']} {scope['path']}",
                target=scope["path"],
                outcome=f"refused 413: body larger than {self.limit} bytes",
            )
        except AuditUnavailable:
            log.warning("could not audit a refused oversized %s", scope["path"])


class TrustedHosts:
    """Answer only requests whose Host header names this app (DNS rebinding: a web page the
    developer visits must not reach a loopback app under a name it controls). Health routes
    answer any Host, for probes that call the pod's address."""

    EXEMPT = frozenset({"/healthz", "/readyz"})

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.allowed = frozenset(h.lower() for h in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.any or scope.get("path") in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        if name in self.allowed:
            await self.app(scope, receive, send)
            return
        body = (
            b'{"detail": "this app does not answer for host %s; it serves %s (ALLOWED_HOSTS)"}'
            % (
                name[:100].encode("latin-1", "replace").replace(b'"', b""),
                ", ".join(sorted(self.allowed)).encode(),
            )
        )
        await send(
            {
                "type": "http.response.start",
                "status": 421,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def require_app_token(request: Request, expected: str | None) -> JSONResponse | None:
    """When APP_API_TOKEN is set, only the sidecar (which sends it) may call; else None."""
    if not expected:
        return None
    given = request.headers.get("dapr-api-token", "")
    if hmac.compare_digest(given.encode(), expected.encode()):
        return None
    return JSONResponse({"detail": "missing or wrong dapr-api-token"}, status_code=401)


def health_router(readiness: Callable[[], Readiness | None]) -> APIRouter:
    """/healthz: the process answers. /readyz: it can work: its sidecar answers, and the state
    store and pub/sub it needs are there (plumbing.health)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        check = readiness()
        if check is None:
            problems = {"readiness": "the app has no readiness check (no gateway yet)"}
        else:
            problems = await check.problems()
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    return router


class TooManyWaiting(Exception):
    """Too many reads are waiting already (429)."""


class WaitingReads:
    """At most `limit` reads wait at once: a read that waits holds a worker thread, and the
    subscriptions share those threads, so long polls must never take them all."""

    def __init__(self, limit: int = 8) -> None:
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def slot(self, wait: float) -> Iterator[None]:
        """Hold a slot while a read waits; a read that does not wait needs none."""
        if wait <= 0:
            yield
            return
        if not self._slots.acquire(blocking=False):
            raise TooManyWaiting(
                f"{self.limit} reads are waiting already; try again in a moment, or read "
                "without wait"
            )
        try:
            yield
        finally:
            self._slots.release()


def get_waiting_reads(request: Request) -> WaitingReads:
    return request.app.state.waiting_reads  # type: ignore[no-any-return]


Waiting = Annotated[WaitingReads, Depends(get_waiting_reads)]
