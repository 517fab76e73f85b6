"""One-click decisions: the pages behind the Approve and Reject links in approvers' e-mail.

GET  /links/{action}/{token}  a confirmation page. It changes nothing: mail scanners open
                              links to look at them, and must not decide anything.
POST /links/{action}/{token}  the confirmation (a form on that page): the decision goes
                              through the checks and the audit of POST /approvals/{id}/decisions,
                              as the approver the link was made for, and uses the link up.

The decision (with its decision id) is stored in the link's `link-used` claim before it is
published, and the claim is never given back: a confirmation that finds the claim held by a
decision not yet known to be published publishes that same decision again (the approval takes
a decision id once), so neither a crash before publishing nor a publish that timed out after
it went through can leave the link used with nothing decided, or decide twice.

A link (contracts.links) is signed by the notifier for one approver, order and stage, and
expires when the stage is due. Refused, each with a page saying why and an audit record: a
link that is not one of ours or was altered (400), an approver who is no longer one (403), a
stage that is no longer current (409), a link used already or expired (410), and whatever
check_can_decide refuses (the approval was decided, or expired).
"""

from __future__ import annotations

import html
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from approvals.api import DecisionBody, new_decision, publish_decision
from approvals.domain import (
    AlreadyDecided,
    ApprovalExpired,
    ApprovalView,
    DecisionRefused,
    UnknownApproval,
    check_can_decide,
)
from approvals.readmodel import load_view
from contracts.links import Action, BadLink, DecisionLink, read_token
from contracts.messages import DecisionSubmitted
from contracts.timestamps import rfc3339
from control.auditing import audit_log, caller_of, record
from plumbing.audit import AuditUnavailable
from plumbing.auth import Principal, Role
from plumbing.gateway import Gateway, GatewayError
from plumbing.state import update

log = logging.getLogger(__name__)

router = APIRouter(tags=["one-click decisions"])

STATUS: dict[type[DecisionRefused], int] = {
    UnknownApproval: 404,
    AlreadyDecided: 409,
    ApprovalExpired: 410,
}


class LinkRefused(Exception):
    """The link cannot decide anything now; `status` and the message say why. `submitted`:
    a decision made with it earlier was submitted, so the page must not say nothing was."""

    def __init__(self, status: int, message: str, submitted: bool = False) -> None:
        super().__init__(message)
        self.status, self.submitted = status, submitted


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A small self-contained page: no scripts, no outside resources."""
    text = (
        "<!doctype html><html><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width">'
        f"<title>{html.escape(title)}</title></head>"
        '<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">'
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    headers = {"content-security-policy": "default-src 'none'; style-src 'unsafe-inline'"}
    return HTMLResponse(text, status_code=status, headers={**headers, "cache-control": "no-store"})


def _approver(request: Request, link: DecisionLink) -> Principal:
    """The approver the link was made for, as the token table has them now."""
    for p in request.app.state.tokens.by_digest.values():
        if p.id == link.approver_id and Role.APPROVER in p.roles:
            return p  # type: ignore[no-any-return]
    raise LinkRefused(403, f"{link.approver_id} is no longer an approver")


def _used_key(link: DecisionLink) -> str:
    return f"link-used:{link.link_id}"


def _published(used: dict[str, Any]) -> bool:
    """Whether the claim's decision is known to be in (claims made before decisions were
    stored in them were given back when publishing failed: they count as published)."""
    return bool(used.get("published", True)) or "decision" not in used


def check_link(
    request: Request, action: str, token: str
) -> tuple[DecisionLink, ApprovalView, dict[str, Any] | None]:
    """Everything a link must pass, in the order a person would want to hear about it; with
    the link's claim when it holds a decision not yet known to be published."""
    if action not in {a.value for a in Action}:
        raise LinkRefused(404, f"no such action {action[:20]!r}: approve or reject")
    try:
        link = read_token(token, request.app.state.verifiers["notifier"])
    except BadLink as exc:
        raise LinkRefused(400, str(exc)) from None
    principal = _approver(request, link)
    request.state.principal = principal  # the audit says whose link it was
    gateway: Gateway = request.app.state.gateway
    used, _ = gateway.state.get(_used_key(link))
    if not used:  # used up before link_id changed, under its legacy id
        used, _ = gateway.state.get(f"link-used:{link.legacy_id}")
    if used and _published(used):
        raise LinkRefused(410, f"this link was used already, at {used['at']}, to {used['action']}")
    try:
        view = _decidable(gateway, link, principal)
    except LinkRefused as exc:
        if not used:
            raise
        raise LinkRefused(
            exc.status,
            f"this link was used at {used['at']} to {used['action']}, and that decision was "
            f"submitted; it cannot be submitted again: {exc}",
            submitted=True,
        ) from None
    return link, view, used or None


def _decidable(gateway: Gateway, link: DecisionLink, principal: Principal) -> ApprovalView:
    """The approval, if the link's approver may decide its stage now."""
    if link.expired(datetime.now(UTC)):
        raise LinkRefused(410, f"this link expired at {rfc3339(link.expires_at)}, with its stage")
    view = load_view(gateway.state, link.order_id)
    if view is not None and (view.stage, view.tier) != (link.stage, link.tier):
        raise LinkRefused(
            409,
            f"this link was for stage {link.stage} ({link.tier.value}); order {link.order_id} "
            f"is now at stage {view.stage} ({view.tier.value})",
        )
    assert principal.level is not None
    try:
        view = check_can_decide(view, link.order_id, principal.id, principal.level)
    except DecisionRefused as exc:
        raise LinkRefused(STATUS.get(type(exc), 403), str(exc)) from None
    return view


def refused(request: Request, exc: LinkRefused, target: str) -> HTMLResponse:
    """The page for a refused link, after its audit record (rate-limited when anonymous)."""
    outcome = f"refused {exc.status}: {exc}"
    try:
        if getattr(request.state, "principal", None) is not None:
            record(request, target=target, outcome=outcome, action="decision_link")
        else:
            audit_log(request).append_refusal(
                caller_of(request),
                str(exc.status),
                actor="anonymous",
                action="decision_link",
                target=target,
                outcome=outcome,
                request_id=getattr(request.state, "request_id", ""),
            )
    except (AuditUnavailable, GatewayError):
        return page("Try again later", "<p>The decision service is busy.</p>", 503)
    outcome_text = (
        "Whether it counted, the order shows." if exc.submitted else "Nothing was decided."
    )
    body = f"<p>{html.escape(str(exc))}.</p><p>{outcome_text}</p>"
    return page("This link cannot be used", body, exc.status)


def _target(token: str) -> str:
    return f"decision link {token[:24]}"


@router.get("/links/{action}/{token}", response_class=HTMLResponse)
def open_link(action: str, token: str, request: Request) -> HTMLResponse:
    """The confirmation page: what the link would decide, and a button to do it."""
    try:
        link, view, pending = check_link(request, action, token)
    except LinkRefused as exc:
        return refused(request, exc, _target(token))
    e = html.escape
    if pending is not None:
        body = (
            f"<p>This link was used at {e(pending['at'])} to <b>{e(pending['action'])}</b> order "
            f"<b>{e(view.order_id)}</b>. That decision was submitted, but is not confirmed "
            "yet.</p>"
            '<form method="post"><p><button type="submit">Submit that decision again'
            "</button></p></form><p>Submitting it again cannot decide twice.</p>"
        )
        return page("Decision submitted", body)
    verb = "Approve" if action == Action.APPROVE else "Reject"
    body = (
        f"<p>{e(link.approver_id)}, you are about to <b>{verb.lower()}</b> order "
        f"<b>{e(view.order_id)}</b> for <b>{e(view.amount_text)}</b> ({e(view.tier.value)}, "
        f"stage {view.stage}, due {e(rfc3339(view.due_at))}).</p>"
        '<form method="post">'
        '<p><label>Reason (optional)<br><textarea name="reason" rows="3" cols="50" '
        'maxlength="1000"></textarea></label></p>'
        f'<p><button type="submit">{verb} order {e(view.order_id)}</button></p></form>'
        "<p>Opening this page decided nothing. The link works once.</p>"
    )
    return page(f"{verb} order {view.order_id}?", body)


@router.post("/links/{action}/{token}", response_class=HTMLResponse)
async def confirm_link(action: str, token: str, request: Request) -> HTMLResponse:
    """Decide as the link's approver, through the API's checks and audit; once per link."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=5)
    reason = (form.get("reason") or [""])[0]
    return await run_in_threadpool(_confirm, request, action, token, reason)


def _confirm(request: Request, action: str, token: str, reason: str) -> HTMLResponse:
    try:
        link, view, pending = check_link(request, action, token)
        body = _decision(action, reason)
    except LinkRefused as exc:
        return refused(request, exc, _target(token))
    gateway: Gateway = request.app.state.gateway
    key = _used_key(link)
    if pending is None:
        decision = new_decision(view, request.state.principal, body)
        claim: dict[str, Any] = {
            "at": rfc3339(datetime.now(UTC)),
            "action": action,
            "decision": decision.model_dump(mode="json"),
            "amount_text": view.amount_text,
            "published": False,
        }
        if gateway.state.claim(key, claim):
            pending = claim
        else:  # another confirmation came first: go on with its decision, if still pending
            pending, _ = gateway.state.get(key)
            if not pending or _published(pending):
                refusal = LinkRefused(410, "this link was used already")
                return refused(request, refusal, link.order_id)
    # The claim stays whatever happens: a failed publish is retried with the same decision.
    decision = DecisionSubmitted.model_validate(pending["decision"])
    submitted = publish_decision(gateway, request, decision, pending["amount_text"])
    _mark_published(gateway, key, decision.decision_id)
    e = html.escape
    text = (
        f"<p>Your decision to <b>{e(pending['action'])}</b> order <b>{e(view.order_id)}</b> was "
        f"submitted ({e(submitted['decision_id'])}). The order follows in a moment.</p>"
        "<p>You can close this page.</p>"
    )
    return page("Decision submitted", text, 202)


def _mark_published(gateway: Gateway, key: str, decision_id: str) -> None:
    """Note in the claim that its decision is in; until then the link publishes it again."""

    def change(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None or current.get("published"):
            return None
        mine = current.get("decision", {}).get("decision_id") == decision_id
        return current | {"published": True} if mine else None

    try:
        update(gateway.state, key, change)
    except GatewayError as exc:  # the decision is in; a later confirmation sends it again
        log.warning("could not mark %s published: %s", key, exc)


def _decision(action: str, reason: str) -> DecisionBody:
    try:
        return DecisionBody(approved=action == Action.APPROVE, reason=reason)
    except ValidationError as exc:
        why = "; ".join(str(err["msg"]) for err in exc.errors())
        raise LinkRefused(422, f"the reason cannot be used: {why}") from None
