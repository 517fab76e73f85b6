"""Audit what callers do over HTTP: every mutation is recorded before it is made, and every
refusal before the answer goes out; GET /audit pages through the log, GET /audit/verify checks it.

A change is wrapped in `audited(...)`: its record is written first (so no change happens
without its record: if the log cannot be written, the change is not made and the caller gets
503), and if the change then fails a second record says so. Refusals of callers we could not
identify are rate-limited per client address (plumbing.refusals); the rest are all written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from plumbing import audit_reader
from plumbing.audit import AuditLog, AuditRecord, AuditUnavailable
from plumbing.auth import Reader
from plumbing.web import InvalidInput

log = logging.getLogger(__name__)

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
MAX_PAGE = 1000
Filter = Annotated[str | None, Query(max_length=200)]


def audit_log(request: Request) -> AuditLog:
    """The app's audit log (built by the lifespan)."""
    return request.app.state.audit  # type: ignore[no-any-return]


def action_of(request: Request) -> str:
    """The route's function name ("suspend_workflow"), else "METHOD path"."""
    endpoint = request.scope.get("endpoint")
    return getattr(endpoint, "__name__", f"{request.method} {request.url.path}")


def caller_of(request: Request) -> str:
    """The client address, the key refusals of unidentified callers are counted by."""
    return request.client.host if request.client else "unknown"


def record(
    request: Request, target: str, outcome: str = "ok", reason: str = "", action: str | None = None
) -> AuditRecord:
    """Append one audit record for this request; raises AuditUnavailable if it cannot."""
    principal = getattr(request.state, "principal", None)
    written = audit_log(request).append(
        actor=principal.id if principal else "anonymous",
        role=principal.role if principal else "-",
        action=action or action_of(request),
        target=target,
        outcome=outcome,
        reason=reason,
        request_id=getattr(request.state, "request_id", ""),
    )
    audit_log(request).flush_suppressed()
    return written


@contextmanager
def audited(
    request: Request, target: str, outcome: str = "ok", reason: str = "", action: str | None = None
) -> Iterator[AuditRecord]:
    """Record the change, then make it (the body of the `with`); a change that raises gets a
    second record saying it failed, and the exception goes on to the error handlers."""
    intent = record(request, target, outcome, reason, action)
    try:
        yield intent
    except Exception as exc:
        request.state.audit_settled = True  # no "refused" record on top of this one
        try:
            record(
                request,
                target,
                outcome=f"failed: {exc}",
                reason=f"record {intent.seq} did not complete; the change may not have been made",
                action=action,
            )
        except AuditUnavailable as unavailable:
            log.warning("could not audit that record %d failed: %s", intent.seq, unavailable)
        raise


def record_refusal(request: Request, status: int, detail: str) -> None:
    """Audit a refused mutation (401, 403, 404, 409, 422, ...); reads are not audited."""
    if request.method not in MUTATING or getattr(request.state, "audit_settled", False):
        return
    target = str(
        request.path_params.get("instance_id")
        or request.path_params.get("order_id")
        or request.url.path
    )
    if getattr(request.state, "principal", None) is not None:
        record(request, target=target, outcome=f"refused {status}: {detail}")
        return
    audit_log(request).append_refusal(
        caller_of(request),
        str(status),
        actor="anonymous",
        action=action_of(request),
        target=target,
        outcome=f"refused {status}: {detail}",
        request_id=getattr(request.state, "request_id", ""),
    )


def matches(filters: dict[str, Any], rec: AuditRecord) -> bool:
    """Filters: actor, action, target (exact), outcome (prefix), since (datetime)."""
    for name in ("actor", "action", "target"):
        if filters.get(name) and getattr(rec, name) != filters[name]:
            return False
    if filters.get("outcome") and not rec.outcome.startswith(filters["outcome"]):
        return False
    since = filters.get("since")
    return not (since and rec.at < since)


def _link(request: Request, rel: str, **cursor: int) -> str:
    url = request.url.remove_query_params(["before_seq", "after_seq"])
    url = url.include_query_params(**cursor)
    return f'<{url.path}?{url.query}>; rel="{rel}"'


def audit_router() -> APIRouter:
    router = APIRouter(tags=["audit"])

    @router.get("/audit")
    def list_audit(
        request: Request,
        response: Response,
        _: Reader,
        actor: Filter = None,
        action: Filter = None,
        target: Filter = None,
        outcome: Annotated[
            str | None, Query(max_length=200, description="prefix: ok, refused, failed")
        ] = None,
        since: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        before_seq: Annotated[int | None, Query(ge=1, description="older than this")] = None,
        after_seq: Annotated[int | None, Query(ge=0, description="newer than this")] = None,
    ) -> list[dict[str, Any]]:
        """One page of matching records, newest last: the newest `limit` (before `before_seq`),
        or the oldest `limit` after `after_seq`. At most 2,000 records are read per call; the
        Link header (rel prev: older, rel next: newer) goes on where this page stopped."""
        if before_seq is not None and after_seq is not None:
            raise InvalidInput("give before_seq or after_seq, not both")
        filters = {
            "actor": actor,
            "action": action,
            "target": target,
            "outcome": outcome,
            "since": since,
        }
        found = audit_reader.page(
            audit_log(request),
            limit=limit,
            before=before_seq,
            after=after_seq,
            match=lambda r: matches(filters, r),
        )
        response.headers["x-audit-last-seq"] = str(found.last_seq)
        links = []
        if found.older is not None:
            links.append(_link(request, "prev", before_seq=found.older))
        if found.newer is not None:
            links.append(_link(request, "next", after_seq=found.newer))
        if links:
            response.headers["link"] = ", ".join(links)
        return [r.model_dump(mode="json") for r in found.records]

    @router.get("/audit/verify")
    def verify_audit(
        request: Request,
        _: Reader,
        full: bool = False,
        anchor_count: Annotated[int | None, Query(ge=1)] = None,
        anchor_head: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$")] = None,
    ) -> dict[str, Any]:
        """Check the log since its last checkpoint (every record with full=true), that it was
        not cut or rewritten at the end, and against an anchor you kept (count and head of
        an earlier verify's `anchor`)."""
        if (anchor_count is None) != (anchor_head is None):
            raise InvalidInput("give anchor_count and anchor_head together")
        anchor = (anchor_count, anchor_head) if anchor_count and anchor_head else None
        v = audit_reader.verify(audit_log(request), full=full, anchor=anchor)
        return {
            "intact": v.intact,
            "summary": v.summary,
            "problems": v.problems,
            "records": v.records,
            "checked_from": v.checked_from,
            "full": v.full,
            "anchor": v.anchor,
        }

    return router
