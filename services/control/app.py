"""The skeleton every service's composition root shares: lifespan, middleware, health, errors,
authentication, the audit API, the console and the instance index's tracking activity."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from dapr.ext.fastapi import DaprApp
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from contracts.messages import reworded
from control import instances
from control.auditing import audit_router, record_refusal
from control.console import console_router
from control.overview import overview_router
from plumbing.audit import AuditLog, AuditUnavailable
from plumbing.audit_keys import AuditConfigError, Keyring
from plumbing.auth import AuthConfigError, Forbidden, TokenTable, Unauthenticated
from plumbing.gateway import Conflict, Gateway, GatewayError, NotFound, Transient
from plumbing.health import Readiness
from plumbing.logs import configure_logging
from plumbing.metrics import Metrics, metrics_router
from plumbing.refusals import RefusalLimiter
from plumbing.runtime import ActivityFactory, KeyConfigError, load_verifiers, open_dapr
from plumbing.settings import ServiceSettings
from plumbing.subscriptions import dead_letters_router
from plumbing.tracing import start_tracing
from plumbing.web import (
    BodyLimit,
    InvalidInput,
    RequestId,
    TooManyWaiting,
    TrustedHosts,
    WaitingReads,
    health_router,
)

log = logging.getLogger(__name__)
Register = Callable[[FastAPI, DaprApp, ServiceSettings], None]


class TokenConfigError(ValueError):
    """The app's sidecar tokens are missing outside development; it refuses to start."""


def load_tokens(gateway: Gateway, settings: ServiceSettings) -> TokenTable:
    """Read the token table from the secret store; fail startup with the reason (outside
    development, short and `dev-` tokens are such a reason)."""
    if gateway.secrets is None:
        raise AuthConfigError("no secret store client: cannot read the api tokens")
    try:
        raw = gateway.secrets.get(settings.secret_store, settings.tokens_secret)
    except GatewayError as exc:
        raise AuthConfigError(
            f"cannot read secret {settings.tokens_secret!r} from secret store "
            f"{settings.secret_store!r}: {exc}"
        ) from None
    return TokenTable.parse(raw, development=settings.development)


def load_audit_log(gateway: Gateway, settings: ServiceSettings) -> AuditLog:
    """The app's audit log, under the keys read once from the secret store (never from the
    state store); fail startup with the reason."""
    name, store = settings.audit_key_secret, settings.secret_store
    if gateway.secrets is None:
        raise AuditConfigError("no secret store client: cannot read the audit key")
    if settings.audit_checkpoint_every < 1:
        raise AuditConfigError("AUDIT_CHECKPOINT_EVERY must be at least 1")
    try:
        raw = gateway.secrets.get(store, name)
    except GatewayError as exc:
        raise AuditConfigError(
            f"cannot read secret {name!r} from secret store {store!r}: {exc}"
        ) from None
    return AuditLog(
        gateway.state,
        Keyring.parse(raw, development=settings.development),
        settings.app_id,
        checkpoint_every=settings.audit_checkpoint_every,
        refusals=RefusalLimiter(settings.audit_refusal_burst, settings.audit_refusals_per_minute),
    )


def _with_tracking(activities: ActivityFactory | None) -> ActivityFactory:
    """The service's activities plus the one that keeps the instance index current."""

    def factory(gateway: Gateway) -> dict[str, Callable[..., Any]]:
        own = activities(gateway) if activities else {}
        return {**own, instances.TRACK_INSTANCE: instances.track_activity(gateway)}

    return factory


def run_ready_hooks(app: FastAPI, gateway: Gateway) -> None:
    """What the app's parts asked to run once the Dapr clients are open (app.state.on_ready),
    such as taking up unfinished bulk jobs. A failure is logged; the app starts anyway."""
    for hook in getattr(app.state, "on_ready", []):
        try:
            hook(gateway, app.state.audit)
        except (GatewayError, AuditUnavailable):
            log.exception("a start-up task failed; the app starts without it")


def build_app(
    *,
    settings: ServiceSettings,
    gateway: Gateway | None,
    register: Register,
    description: str,
    workflows: dict[str, Callable[..., Any]] | None = None,
    activities: ActivityFactory | None = None,
    errors: dict[type[Exception], int] | None = None,
    signs: bool = False,
) -> FastAPI:
    """A FastAPI app whose lifespan opens the Dapr clients once (unless a gateway is given).

    With `signs`, what the app publishes is signed with its key. Every app loads the signers'
    public keys (`app.state.verifiers`, by signer) for subscriptions that take signed messages."""
    if gateway is None:
        configure_logging(settings.app_id, log_format=settings.log_format)
        problem = settings.token_problem()
        if problem:
            raise TokenConfigError(problem)
        if not (settings.app_api_token and settings.dapr_api_token):
            log.warning("development run without sidecar tokens: any local process can call")

    def load_secrets(app: FastAPI, gateway: Gateway) -> None:
        app.state.tokens = load_tokens(gateway, settings)
        app.state.audit = load_audit_log(gateway, settings)
        if gateway.secrets is None:
            raise KeyConfigError("no secret store client: cannot read the verification keys")
        app.state.verifiers = load_verifiers(gateway.secrets, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if gateway is not None:
            gateway.metrics = app.state.metrics
            app.state.gateway = gateway
            load_secrets(app, gateway)
            await asyncio.to_thread(run_ready_hooks, app, gateway)
            yield
            await asyncio.to_thread(app.state.audit.flush_suppressed, everything=True)
            return
        res = await asyncio.to_thread(
            open_dapr,
            settings,
            workflows,
            _with_tracking(activities) if workflows else None,
            signs,
            app.state.metrics,
        )
        app.state.gateway = res.gateway
        try:
            await asyncio.to_thread(load_secrets, app, res.gateway)
            await asyncio.to_thread(run_ready_hooks, app, res.gateway)
            yield
            await asyncio.to_thread(app.state.audit.flush_suppressed, everything=True)
        finally:
            await asyncio.to_thread(res.close)
            if stop_tracing is not None:
                await asyncio.to_thread(stop_tracing)

    # Swagger UI and ReDoc load their scripts from a CDN: development only. /openapi.json stays.
    app = FastAPI(
        title=settings.app_id,
        description=description,
        lifespan=lifespan,
        docs_url="/docs" if settings.development else None,
        redoc_url="/redoc" if settings.development else None,
    )
    app.state.settings = settings
    app.state.waiting_reads = WaitingReads()
    app.state.metrics = Metrics()
    app.state.overview_parts = {}  # control.overview: what the app adds to GET /overview
    # Only a real app (no gateway given) exports traces; tests that pass a fake never do.
    stop_tracing = (
        start_tracing(app, settings.app_id) if gateway is None and settings.tracing else None
    )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(TrustedHosts, allowed=settings.allowed_hosts)

    app.add_middleware(RequestId)

    _install_error_handlers(
        app,
        {
            **(errors or {}),
            InvalidInput: 422,
            TooManyWaiting: 429,
            Unauthenticated: 401,
            Forbidden: 403,
            NotFound: 404,
            Conflict: 409,
            AuditUnavailable: 503,
            Transient: 503,
            GatewayError: 502,
        },
    )

    def readiness() -> Readiness | None:
        gateway: Gateway | None = getattr(app.state, "gateway", None)  # set by the lifespan
        return gateway.readiness if gateway is not None else None

    app.include_router(health_router(readiness))
    app.include_router(dead_letters_router(lambda: app.state.gateway))
    app.include_router(audit_router())
    app.include_router(metrics_router(app.state.metrics))
    app.include_router(overview_router())
    if workflows:
        app.include_router(console_router())
    register(app, DaprApp(app), settings)
    return app


def _install_error_handlers(app: FastAPI, mapping: dict[type[Exception], int]) -> None:
    """Domain exceptions become HTTP errors here, once; a refused mutation is audited."""

    async def answer(
        request: Request, status: int, detail: str, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        if status < 500:
            try:
                await run_in_threadpool(record_refusal, request, status, detail)
            except (AuditUnavailable, GatewayError) as exc:
                log.warning("could not audit a refused %s: %s", request.method, exc)
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        status = next(code for cls, code in mapping.items() if isinstance(exc, cls))
        headers = {"www-authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, Transient):
            headers = {"retry-after": "5"}
        return await answer(request, status, str(exc), headers)

    for cls in mapping:
        app.add_exception_handler(cls, domain_error)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [_problem(e) for e in exc.errors()]
        return await answer(request, 422, "; ".join(problems) or "invalid request")

    app.add_exception_handler(RequestValidationError, invalid)


def _problem(err: dict[str, Any]) -> str:
    """One validation error of a request in words: 'field: problem', or what is wrong with the
    body as a whole (not JSON at all, not an object, missing)."""
    loc = [str(p) for p in err.get("loc", ())]
    if err.get("type") == "json_invalid":  # loc is ("body", offset of the error)
        why = (err.get("ctx") or {}).get("error", "it cannot be parsed")
        at = f" (at character {int(loc[-1]) + 1})" if loc and loc[-1].isdigit() else ""
        return f"the request body is not valid JSON: {why}{at}"
    if loc[:1] == ["body"]:
        loc = loc[1:]
        if not loc and err.get("type") == "missing":
            return "the request body is empty; send a JSON object"
        if not loc and isinstance(err.get("input"), bytes):
            return (
                "the request body was not read as JSON: send it with Content-Type: application/json"
            )
        if not loc:
            return f"the request body {reworded(err)}"
    return f"{'.'.join(loc)}: {reworded(err)}"
