"""The workflow management API ("the control room"), written once, mounted by every app that
hosts workflows, for its own instances, under /workflows.

Reads need any token; mutations need operator or admin; bulk jobs need admin. Every change is
in the audit log before it is made (`audited`: no record, no change), and every refusal before
the answer goes out.

The API operates workflows; it never makes business decisions. Each workflow says, in its
`WorkflowRules`, which events an operator may raise (never the business events `decision` and
`approval_outcome`) and how an operator may start it: from the caller's business input with the
server's own policy, or not at all. A terminated workflow's output is set here (who and why),
never by the caller, so it cannot pose as a business outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from contracts.text import PlainText
from control import instances, jobs
from control.auditing import audited, record
from control.bulk import Keeper, as_terminated, terminated_output
from control.diagnosis import diagnosis_router, stuck_entries
from control.job_routes import job_router
from control.retention import mount_retention
from control.views import describe, in_time_order
from plumbing.auth import Forbidden, Operator, Reader
from plumbing.gateway import Conflict, Gateway, InstanceState, NotFound, workflows_of
from plumbing.web import InvalidInput

log = logging.getLogger(__name__)

InstanceId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="workflow instance id")
]
EventName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
MAX_WAIT_S = 60.0


class StartBody(BaseModel):
    name: str
    input: Any = None
    instance_id: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None


class ReasonBody(BaseModel):
    reason: Annotated[PlainText, Field(min_length=1, max_length=500)]


class TerminateBody(BaseModel):
    """Why the instance is stopped; the output is the server's, never the caller's."""

    model_config = ConfigDict(extra="forbid")
    reason: Annotated[PlainText, Field(min_length=1, max_length=500)]


# Validate an operator's start input and say which instance it makes and how to start it (the
# start answers False when the business id was used before and nothing was started).
Starter = Callable[[Any], tuple[str, Callable[[Gateway], bool]]]


@dataclass(frozen=True)
class WorkflowRules:
    """What operators may do to one workflow through the management API."""

    # Events an operator may raise into it (case-insensitive, as Dapr matches them).
    events: frozenset[str] = frozenset()
    # How an operator starts it from business input; None: it starts only from its topic.
    start: Starter | None = None
    started_by: str = "its business flow"
    # Keeps its business outcome in the app's own record: when it is terminated, and before its
    # history is purged.
    keep: Callable[[Gateway, InstanceState], None] | None = None
    # Which of these instance ids (its own only) have their outcome in that record already, from
    # one bulk read: a bulk purge of those needs no keep, so no read of the instance. None: each
    # instance is read and kept first.
    kept: Callable[[Gateway, list[str]], set[str]] | None = None

    def accepts(self, event: str) -> bool:
        return event.casefold() in {e.casefold() for e in self.events}


def management_router(workflows: dict[str, WorkflowRules]) -> APIRouter:
    """The /workflows routes for the workflows this app registers, under their rules."""
    router = APIRouter(prefix="/workflows", tags=["workflow management"])

    def gateway_of(request: Request) -> Gateway:
        return request.app.state.gateway  # type: ignore[no-any-return]

    keep = keeper(workflows)

    def existing(request: Request, instance_id: str) -> InstanceState:
        state = workflows_of(gateway_of(request)).state(instance_id)
        if state is None:
            raise NotFound(f"no workflow instance {instance_id!r}")
        return state

    @router.post("", status_code=201)
    def start_workflow(
        body: StartBody, request: Request, response: Response, _: Operator
    ) -> dict[str, Any]:
        """Start a workflow from business input, with the server's own policy and naming.

        An instance that exists already answers 200 with that instance instead."""
        rules = workflows.get(body.name)
        if rules is None:
            raise NotFound(
                f"unknown workflow {body.name!r}; this app hosts {', '.join(sorted(workflows))}"
            )
        if rules.start is None:
            raise Forbidden(
                f"{body.name} starts only from {rules.started_by}; "
                "the management API does not start it"
            )
        iid, begin = rules.start(body.input)
        if body.instance_id is not None and body.instance_id != iid:
            raise InvalidInput(
                f"instance_id: {body.name} instances are named by their business id; "
                f"this input makes {iid!r}"
            )
        gateway = gateway_of(request)
        current = workflows_of(gateway).state(iid)
        if current is not None:
            response.status_code = 200
            record(request, target=iid, outcome="ok: exists", reason=current.status)
            return {"instance_id": iid, "created": False, "status": current.status}
        with audited(request, target=iid, reason=body.name):
            started = begin(gateway)
        if not started:
            response.status_code = 200
            return {
                "instance_id": iid,
                "created": False,
                "status": "NOT_STARTED",
                "detail": "this business id was used before (its instance was purged); "
                "a new one needs a new id",
            }
        return {"instance_id": iid, "created": True, "status": "RUNNING"}

    @router.get("")
    def list_workflows(
        request: Request,
        _: Reader,
        status: Annotated[list[str] | None, Query(description="repeat for several")] = None,
        name: str | None = None,
        created_before: datetime | None = None,
        created_after: datetime | None = None,
        updated_before: datetime | None = None,
        updated_after: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
        stuck: bool = False,
        stuck_after: Annotated[
            str | None, Query(description="e.g. 30m; default STUCK_AFTER")
        ] = None,
    ) -> dict[str, Any]:
        """Instances from the index, newest first, filtered and paged. With `stuck`, only the
        live ones that are stuck, each with why (`stuck`): past their deadline, a timer overdue,
        an event no wait took, an activity failing, or no progress for `stuck_after`."""
        wanted = frozenset(s.upper() for s in status or [])
        unknown = sorted(wanted - instances.STATUSES)
        if unknown:
            raise InvalidInput(f"status: unknown {unknown}; use {sorted(instances.STATUSES)}")
        match = instances.Filter(
            wanted, name, created_before, created_after, updated_before, updated_after
        )
        rows = sorted(
            (e for e in instances.entries(gateway_of(request).state) if match(e)),
            key=lambda e: e.created_at,
            reverse=True,
        )
        why: dict[str, list[str]] = {}
        if stuck:
            quiet = _duration("stuck_after", stuck_after) or request.app.state.settings.stuck_after
            now = datetime.now(UTC)
            why = {
                e.instance_id: w for e, w in stuck_entries(gateway_of(request), rows, quiet, now)
            }
            rows = [e for e in rows if e.instance_id in why]
        page = rows[offset : offset + limit]
        return {
            "total": len(rows),
            "offset": offset,
            "limit": limit,
            "instances": [
                e.model_dump(mode="json") | ({"stuck": why[e.instance_id]} if stuck else {})
                for e in page
            ],
        }

    @router.post("/reconcile")
    def reconcile_index(request: Request, _: Operator) -> dict[str, int]:
        """Rebuild the index from Dapr's own list (slow: one call per instance)."""
        gateway = gateway_of(request)
        with audited(request, target="index", reason="rebuild from Dapr's list"):
            return instances.reconcile(gateway.state, workflows_of(gateway))

    @router.get("/{instance_id}")
    def get_workflow(
        instance_id: InstanceId, request: Request, _: Reader, payloads: bool = False
    ) -> dict[str, Any]:
        """Status, times, custom status, failure; input and output with ?payloads=true."""
        state = workflows_of(gateway_of(request)).state(instance_id, payloads=payloads)
        if state is None:
            raise NotFound(f"no workflow instance {instance_id!r}")
        return describe(state, payloads)

    @router.get("/{instance_id}/history")
    def workflow_history(
        instance_id: InstanceId, request: Request, _: Reader
    ) -> list[dict[str, Any]]:
        """The instance's execution history, oldest first, numbered in `seq`."""
        existing(request, instance_id)
        return in_time_order(workflows_of(gateway_of(request)).history(instance_id))

    @router.get("/{instance_id}/wait")
    def wait_for_workflow(
        instance_id: InstanceId,
        request: Request,
        _: Reader,
        timeout: Annotated[float, Query(gt=0, le=MAX_WAIT_S)] = 30.0,
    ) -> dict[str, Any]:
        """Wait (at most `timeout` seconds, up to 60) for the instance to finish."""
        existing(request, instance_id)
        state = workflows_of(gateway_of(request)).wait(instance_id, timeout)
        if state is None:
            raise NotFound(f"no workflow instance {instance_id!r}")
        return describe(state, False) | {"finished": state.status in instances.TERMINAL}

    @router.post("/{instance_id}/events/{event_name}", status_code=202)
    def raise_workflow_event(
        instance_id: InstanceId,
        event_name: EventName,
        request: Request,
        _: Operator,
        data: Annotated[Any, Body()] = None,
    ) -> dict[str, str]:
        """Raise an operator event into the instance (the body is the event's data).

        Only events the workflow lists for operators; business events come from their APIs."""
        state = existing(request, instance_id)
        rules = workflows.get(state.name)
        if rules is None or not rules.accepts(event_name):
            allowed = sorted(rules.events) if rules else []
            raise Forbidden(
                f"{state.name or 'this workflow'} takes no operator event {event_name!r} "
                f"(operator events: {', '.join(allowed) or 'none'}); business decisions come "
                "only through the approvals API"
            )
        if state.status in instances.TERMINAL:
            raise Conflict(f"instance {instance_id} is {state.status}: it takes no events")
        with audited(request, target=instance_id, reason=event_name):
            workflows_of(gateway_of(request)).raise_event(instance_id, event_name, data)
        return {"instance_id": instance_id, "event": event_name, "status": "raised"}

    def _transition(
        request: Request,
        instance_id: str,
        allowed: set[str],
        verb: str,
        reason: str,
        act: Callable[[], None],
        new_status: str,
    ) -> dict[str, str]:
        state = existing(request, instance_id)
        if state.status not in allowed:
            raise Conflict(
                f"instance {instance_id} is {state.status}: only "
                f"{' or '.join(sorted(allowed))} instances can be {verb}"
            )
        with audited(request, target=instance_id, reason=reason):
            act()
        instances.set_status(gateway_of(request).state, instance_id, new_status)
        return {"instance_id": instance_id, "status": new_status}

    @router.post("/{instance_id}/suspend")
    def suspend_workflow(
        instance_id: InstanceId, body: ReasonBody, request: Request, _: Operator
    ) -> dict[str, str]:
        """Suspend a running instance; events raised meanwhile wait for the resume."""
        wf = workflows_of(gateway_of(request))
        return _transition(
            request,
            instance_id,
            {"RUNNING"},
            "suspended",
            body.reason,
            lambda: wf.suspend(instance_id, body.reason),
            "SUSPENDED",
        )

    @router.post("/{instance_id}/resume")
    def resume_workflow(
        instance_id: InstanceId, body: ReasonBody, request: Request, _: Operator
    ) -> dict[str, str]:
        """Resume a suspended instance."""
        wf = workflows_of(gateway_of(request))
        return _transition(
            request,
            instance_id,
            {"SUSPENDED"},
            "resumed",
            body.reason,
            lambda: wf.resume(instance_id, body.reason),
            "RUNNING",
        )

    @router.post("/{instance_id}/terminate")
    def terminate_workflow(
        instance_id: InstanceId, body: TerminateBody, request: Request, operator: Operator
    ) -> dict[str, str]:
        """Terminate a running, pending or suspended instance, with a reason (required).

        Its output records who terminated it and why; it is never a business outcome."""
        gateway = gateway_of(request)
        wf = workflows_of(gateway)
        output = terminated_output(operator.id, body.reason)
        answer = _transition(
            request,
            instance_id,
            {"RUNNING", "PENDING", "SUSPENDED", "STALLED"},
            "terminated",
            body.reason,
            lambda: wf.terminate(instance_id, output),
            "TERMINATED",
        )
        current = wf.state(instance_id)
        if current is not None:  # the app's record says it ended so, not that it still waits
            keep(gateway, as_terminated(current, output))
        return answer

    @router.delete("/{instance_id}")
    def purge_workflow(instance_id: InstanceId, request: Request, _: Operator) -> dict[str, str]:
        """Delete a finished instance and its history; a live one is refused with 409.

        The app's business record of it stays (`WorkflowRules.keep` completes it first)."""
        state = existing(request, instance_id)
        if state.status not in instances.TERMINAL:
            raise Conflict(
                f"instance {instance_id} is {state.status}: only COMPLETED, FAILED or "
                "TERMINATED instances can be purged; terminate it first"
            )
        gateway = gateway_of(request)
        with audited(request, target=instance_id, reason=state.status):
            keep(gateway, state)
            workflows_of(gateway).purge(instance_id)
        instances.forget(gateway.state, instance_id)
        return {"instance_id": instance_id, "status": "purged"}

    return router


def _duration(field: str, text: str | None) -> timedelta | None:
    """A positive duration from a query parameter; InvalidInput says what is wrong."""
    if text is None:
        return None
    try:
        return jobs.parse_age(text)
    except ValueError as exc:
        raise InvalidInput(f"{field}: {exc}") from None


def mount_management(app: FastAPI, workflows: dict[str, WorkflowRules]) -> None:
    """Add the /workflows routes to the app, and have its lifespan take up the bulk jobs a
    previous run of the app left unfinished (control.app.build_app runs `app.state.on_ready`
    once the Dapr clients are open)."""
    keep = keeper(workflows)
    mount_retention(app, keep)
    app.include_router(job_router(keep))
    app.include_router(diagnosis_router())
    app.include_router(management_router(workflows))
    hooks = getattr(app.state, "on_ready", [])
    app.state.on_ready = [*hooks, lambda gateway, audit: jobs.keep_resuming(gateway, audit, keep)]


def keeper(workflows: dict[str, WorkflowRules]) -> Keeper:
    """Keeps each workflow's business outcome by its own rules (WorkflowRules.keep, .kept)."""

    def keep(gateway: Gateway, state: InstanceState) -> None:
        rules = workflows.get(state.name)
        if rules is not None and rules.keep is not None:
            rules.keep(gateway, state)

    def settled(gateway: Gateway, instance_ids: list[str]) -> set[str]:
        keeping = [rules for rules in workflows.values() if rules.keep is not None]
        if not keeping:
            return set(instance_ids)
        return {i for rules in keeping if rules.kept for i in rules.kept(gateway, instance_ids)}

    return Keeper(keep, settled)
