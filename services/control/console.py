"""The web console: one static page, its script and its stylesheet, over the management, audit
and approvals APIs."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

# No inline script or style: the page loads both from this router and talks only to this origin.
POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "content-security-policy": POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def console_router() -> APIRouter:
    """GET /console: workflows, their history and actions, the approvals inbox, the audit log."""
    here = Path(__file__).parent
    page = (here / "console.html").read_text()
    script = (here / "console.js").read_text()
    style = (here / "console.css").read_text()
    router = APIRouter(tags=["console"])

    @router.get("/console", include_in_schema=False)
    def console() -> HTMLResponse:
        return HTMLResponse(page, headers=HEADERS)

    @router.get("/console/app.js", include_in_schema=False)
    def console_script() -> Response:
        return Response(script, media_type="text/javascript", headers=HEADERS)

    @router.get("/console/app.css", include_in_schema=False)
    def console_style() -> Response:
        return Response(style, media_type="text/css", headers=HEADERS)

    return router
