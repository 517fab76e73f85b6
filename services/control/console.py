"""The web console: one static page over the management, audit and approvals APIs."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

# The page has its script and styles inline and talks only to this origin.
POLICY = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"


def console_router() -> APIRouter:
    """GET /console: workflows, their history and actions, the approvals inbox, the audit log."""
    page = (Path(__file__).parent / "console.html").read_text()
    router = APIRouter(tags=["console"])

    @router.get("/console", include_in_schema=False)
    def console() -> HTMLResponse:
        return HTMLResponse(
            page, headers={"content-security-policy": POLICY, "x-frame-options": "DENY"}
        )

    return router
