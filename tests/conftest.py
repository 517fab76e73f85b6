"""Fixtures shared by the tiers that need the real stack (e2e, browser): started once per run,
and only when a test asks for it."""

from tests.stack import flow, http, stack, webhook

__all__ = ["flow", "http", "stack", "webhook"]
