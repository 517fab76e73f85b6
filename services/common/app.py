"""The shape every service's composition root shares: lifespan, middleware, health, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from dapr.ext.fastapi import DaprApp
from fastapi import FastAPI

from common.gateway import Conflict, Gateway, GatewayError, NotFound, Transient
from common.runtime import ActivityFactory, open_dapr
from common.settings import ServiceSettings
from common.subscriptions import dead_letters_router
from common.web import BodyLimit, configure_logging, health_router, install_error_handlers

Register = Callable[[FastAPI, DaprApp, ServiceSettings], None]


def build_app(
    *,
    settings: ServiceSettings,
    gateway: Gateway | None,
    register: Register,
    description: str,
    workflows: dict[str, Callable[..., Any]] | None = None,
    activities: ActivityFactory | None = None,
    errors: dict[type[Exception], int] | None = None,
) -> FastAPI:
    """A FastAPI app whose lifespan opens the Dapr clients once (unless a gateway is given)."""
    if gateway is None:
        configure_logging(settings.app_id)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if gateway is not None:
            app.state.gateway = gateway
            yield
            return
        res = await asyncio.to_thread(open_dapr, settings, workflows, activities)
        app.state.gateway = res.gateway
        try:
            yield
        finally:
            await asyncio.to_thread(res.close)

    app = FastAPI(title=settings.app_id, description=description, lifespan=lifespan)
    app.state.settings = settings
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    install_error_handlers(
        app, {**(errors or {}), NotFound: 404, Conflict: 409, Transient: 503, GatewayError: 502}
    )
    app.include_router(health_router(lambda: settings.sidecar_url))
    app.include_router(dead_letters_router(lambda: app.state.gateway))
    register(app, DaprApp(app), settings)
    return app
