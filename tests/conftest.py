"""Fixtures shared by the tiers that need the real stack (e2e, browser): started once per run,
and only when a test asks for it; and one for tests that configure the apps' logging."""

import logging
from collections.abc import Iterator

import pytest

from tests.stack import flow, http, stack, webhook

__all__ = ["flow", "http", "root_logging", "stack", "webhook"]

SDK_LOGGERS = ("WorkflowRuntime", "DaprWorkflowClient", "durabletask-worker", "durabletask-client")


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers, the SDK adds its own: put all back."""
    loggers = [logging.getLogger(n) for n in ("", "httpx", *SDK_LOGGERS)]
    saved = [(lg, lg.handlers[:], lg.level) for lg in loggers]
    logging.getLogger().handlers.clear()  # pytest's own, which basicConfig(force) would close
    yield
    for lg, handlers, level in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
