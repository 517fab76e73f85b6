"""Audit what callers do over HTTP: every mutation, done or refused, before the answer goes out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from plumbing import audit
from plumbing.auth import Reader

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


def action_of(request: Request) -> str:
    """The route's function name ("suspend_workflow"), else "METHOD path"."""
    endpoint = request.scope.get("endpoint")
    return getattr(endpoint, "__name__", f"{request.method} {request.url.path}")


def record(
    request: Request, target: str, outcome: str = "ok", reason: str = "", action: str | None = None
) -> audit.AuditRecord:
    """Append one audit record for this request; raises AuditUnavailable if it cannot."""
    principal = getattr(request.state, "principal", None)
    return audit.append(
        request.app.state.gateway.state,
        actor=principal.id if principal else "anonymous",
        role=principal.role if principal else "-",
        action=action or action_of(request),
        target=target,
        outcome=outcome,
        reason=reason,
        request_id=getattr(request.state, "request_id", ""),
    )


def record_refusal(request: Request, status: int, detail: str) -> None:
    """Audit a refused mutation (401, 403, 404, 409, 422, ...); reads are not audited."""
    if request.method in MUTATING:
        target = str(
            request.path_params.get("instance_id")
            or request.path_params.get("order_id")
            or request.url.path
        )
        record(request, target=target, outcome=f"refused {status}: {detail}"[:500])


def audit_router() -> APIRouter:
    router = APIRouter(tags=["audit"])

    @router.get("/audit")
    def list_audit(
        request: Request,
        _: Reader,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        outcome: Annotated[str | None, Query(description="prefix: ok, refused, failed")] = None,
        since: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[dict[str, Any]]:
        """Audit records matching the filters, newest last (at most `limit`)."""
        filters = {
            "actor": actor,
            "action": action,
            "target": target,
            "outcome": outcome,
            "since": since,
        }
        found = [
            r for r in audit.read(request.app.state.gateway.state) if audit.matches(r, filters)
        ]
        return [r.model_dump(mode="json") for r in found[-limit:]]

    @router.get("/audit/verify")
    def verify_audit(request: Request, _: Reader) -> dict[str, Any]:
        """Recompute the hash chain over every record."""
        ok, summary = audit.verify(audit.read(request.app.state.gateway.state))
        return {"intact": ok, "summary": summary}

    return router
