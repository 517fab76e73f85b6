"""GET /overview: what an operator looks at first, each figure with the list behind it.

Counts of this app's workflow instances by status (from the instance index), its dead letters
by topic, its most recent failed instances, and what the app adds itself (its
`app.state.overview_parts`, name -> what computes it from the gateway: the approvals app adds
its pending and overdue approvals by tier); with the address of the trace UI, so that the
console can link an instance to its trace.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request

from control import instances
from plumbing.auth import Reader
from plumbing.gateway import Gateway
from plumbing.settings import ServiceSettings
from plumbing.subscriptions import DEAD_LETTERS_KEY

RECENT_FAILURES = 10
Part = Callable[[Gateway], Any]


def overview_router() -> APIRouter:
    router = APIRouter(tags=["overview"])

    @router.get("/overview")
    def overview(request: Request, _reader: Reader) -> dict[str, Any]:
        """Instances by status, dead letters by topic, recent failures, and the app's own parts."""
        gateway: Gateway = request.app.state.gateway
        settings: ServiceSettings = request.app.state.settings
        entries = instances.entries(gateway.state) if gateway.workflows is not None else []
        failed = sorted(
            (e for e in entries if e.status == "FAILED"), key=lambda e: e.updated_at, reverse=True
        )
        dead_letters, _ = gateway.state.get(DEAD_LETTERS_KEY)
        parts: dict[str, Part] = request.app.state.overview_parts
        return {
            "app": settings.app_id,
            "workflows": dict(sorted(Counter(e.status for e in entries).items())),
            "dead_letters": dict(
                sorted(Counter(str(d["topic"]) for d in dead_letters or []).items())
            ),
            "recent_failures": [e.model_dump(mode="json") for e in failed[:RECENT_FAILURES]],
            "traces_url": settings.traces_url or None,
            **{name: part(gateway) for name, part in parts.items()},
        }

    return router
