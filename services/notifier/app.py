"""notifier: the composition root. `create_app(settings, gateway)` builds the FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from control.app import build_app
from notifier import api
from notifier.settings import NotifierSettings
from plumbing.gateway import Gateway


def create_app(settings: NotifierSettings | None = None, gateway: Gateway | None = None) -> FastAPI:
    return build_app(
        settings=settings or NotifierSettings.from_env(),
        gateway=gateway,
        register=api.register,
        description="Delivers approval requests and order status changes to people.",
    )
