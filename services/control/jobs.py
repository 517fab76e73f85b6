"""Bulk jobs over this app's workflow instances: purge or terminate many, with a dry run.

A job is a record in the state store ("job:<id>") with its progress and what happened to each
instance; the work runs in a thread of the app, 8 instances at a time, saving progress after
each chunk. Each instance is re-read from Dapr before it is touched, so a job is safe to run
again.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from contracts.policy import parse_duration
from contracts.timestamps import rfc3339
from control import instances
from plumbing.audit import AuditLog, AuditUnavailable
from plumbing.gateway import Gateway, GatewayError, InstanceState, StateStore, workflows_of
from plumbing.state import update

log = logging.getLogger(__name__)

LONGEST = timedelta(days=36500)
JOB_CHUNK = 25
JOB_WORKERS = 8
MAX_LISTED = 1000  # instance ids one job may name


def parse_age(text: str, zero: bool = False) -> timedelta:
    """A job's age limit: positive and under 100 years, or 0 when `zero` allows it.

    Raises ValueError, which the request's validation reports under the field's name."""
    value = parse_duration(text)
    if value == timedelta(0) and not zero:
        raise ValueError(
            "0 is for purge only (every finished instance); to terminate, give a positive "
            "age, or none for the instances past their deadline"
        )
    if value < timedelta(0) or value > LONGEST:
        raise ValueError(f"must be positive and under 100 years, got {text!r}")
    return value


class JobBody(BaseModel):
    """A bulk job. purge: every terminal instance, or those finished longer ago than
    `older_than` ("0s" is every one). terminate: running or suspended ones created longer ago
    than `older_than`, or past their deadline ("stuck"). `instance_ids` limits the job to those
    instances (each must still qualify), e.g. the ones a script or an incident report lists."""

    action: Literal["purge", "terminate"]
    older_than: str | None = None
    dry_run: bool = False
    instance_ids: Annotated[
        list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]] | None,
        Field(min_length=1, max_length=MAX_LISTED),
    ] = None

    @field_validator("older_than")
    @classmethod
    def _valid_duration(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            parse_age(value, zero=info.data.get("action") == "purge")
        return value


def terminated_output(who: str, reason: str) -> dict[str, Any]:
    """The output of an instance an operator or a job terminated: never a business outcome."""
    return {"terminated": True, "by": who, "reason": reason}


def create(gateway: Gateway, body: JobBody, actor: str) -> tuple[dict[str, Any], list[str]]:
    """Choose the targets and save the job record; `launch` then runs it."""
    targets = select_targets(gateway, body, datetime.now(UTC))
    job_id = f"job-{uuid.uuid4().hex[:12]}"
    job: dict[str, Any] = {
        "job_id": job_id,
        "action": body.action,
        "older_than": body.older_than,
        "dry_run": body.dry_run,
        "instance_ids": body.instance_ids,
        "actor": actor,
        "status": "running",
        "total": len(targets),
        "done": 0,
        "results": {},
        "created_at": rfc3339(datetime.now(UTC)),
        "finished_at": None,
    }
    gateway.state.put(_key(job_id), job)
    return job, targets


# Keeps an instance's business outcome when it is terminated and before its history is purged
# (WorkflowRules.keep).
Keeper = Callable[[Gateway, InstanceState], None]


def as_terminated(state: InstanceState, output: dict[str, Any]) -> InstanceState:
    """The instance as it is once the terminate it was just sent has taken effect."""
    return replace(state, status="TERMINATED", output=json.dumps(output))


def _keep_nothing(gateway: Gateway, state: InstanceState) -> None:
    return None


def launch(
    gateway: Gateway,
    audit: AuditLog,
    job: dict[str, Any],
    targets: list[str],
    keep: Keeper = _keep_nothing,
) -> None:
    """Run the job in the background."""
    args = (gateway, audit, job, targets, keep)
    threading.Thread(target=run_job, args=args, daemon=True).start()


def load(state: StateStore, job_id: str) -> dict[str, Any] | None:
    job, _etag = state.get(_key(job_id))
    return job


def _key(job_id: str) -> str:
    return f"job:{job_id}"


def select_targets(gateway: Gateway, body: JobBody, now: datetime) -> list[str]:
    """The instance ids a job would touch, from the index."""
    age = None
    if body.older_than:  # a purge's "0s" is every finished instance, as without older_than
        age = parse_age(body.older_than, zero=body.action == "purge") or None
    chosen = []
    named = set(body.instance_ids) if body.instance_ids is not None else None
    for e in instances.entries(gateway.state):
        if named is not None and e.instance_id not in named:
            continue
        if body.action == "purge":
            if e.status in instances.TERMINAL and (age is None or e.updated_at < now - age):
                chosen.append(e.instance_id)
        elif e.status in {"RUNNING", "SUSPENDED", "PENDING", "STALLED"}:
            too_old = age is not None and e.created_at < now - age
            overdue = age is None and e.deadline is not None and e.deadline < now
            if too_old or overdue:
                chosen.append(e.instance_id)
    return sorted(chosen)


def run_job(
    gateway: Gateway,
    audit: AuditLog,
    job: dict[str, Any],
    targets: list[str],
    keep: Keeper = _keep_nothing,
) -> None:
    """Work through the targets in chunks, 8 at a time, saving progress after each chunk.

    Each instance is re-read from Dapr before it is touched, so a job is safe to run again.
    """
    results: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=JOB_WORKERS) as pool:
        for start in range(0, len(targets), JOB_CHUNK):
            chunk = targets[start : start + JOB_CHUNK]
            for iid, result in zip(
                chunk, pool.map(lambda i: _attempt(gateway, job, i, keep), chunk), strict=True
            ):
                results[iid] = result
            gone = [i for i in chunk if results[i] in ("purged", "gone")]
            terminated = [i for i in chunk if results[i] == "terminated"]
            try:
                instances.forget_many(gateway.state, gone)
                for iid in terminated:
                    instances.set_status(gateway.state, iid, "TERMINATED")
            except GatewayError as exc:  # the index is rebuilt by reconcile; the job goes on
                log.warning("%s: index not updated for a chunk: %s", job["job_id"], exc)
            _save(gateway, job, results, start + len(chunk), finished=False)
    _save(gateway, job, results, len(targets), finished=True)
    failed = sum(1 for r in results.values() if r.startswith("failed"))
    try:
        audit.append(
            actor=job["actor"],
            role="admin",
            action="job_finished",
            target=job["job_id"],
            outcome="ok" if not failed else f"failed: {failed}",
            reason=f"{job['action']}: {len(targets)} instances, {failed} failed",
        )
    except AuditUnavailable:
        log.exception("could not audit the end of %s", job["job_id"])


def _attempt(gateway: Gateway, job: dict[str, Any], iid: str, keep: Keeper) -> str:
    try:
        return _apply(gateway, job, iid, keep)
    except GatewayError as exc:
        return f"failed: {exc}"[:300]


def _apply(gateway: Gateway, job: dict[str, Any], iid: str, keep: Keeper) -> str:
    wf = workflows_of(gateway)
    state = wf.state(iid)
    if state is None:
        return "gone"
    if job["action"] == "purge":
        if state.status not in instances.TERMINAL:
            return f"skipped: {state.status}"
        if job["dry_run"]:
            return "would purge"
        keep(gateway, state)
        wf.purge(iid)
        return "purged"
    if state.status in instances.TERMINAL:
        return f"skipped: {state.status}"
    if job["dry_run"]:
        return "would terminate"
    output = terminated_output(job["job_id"], "stuck")
    wf.terminate(iid, output)
    keep(gateway, as_terminated(state, output))
    return "terminated"


def _save(
    gateway: Gateway, job: dict[str, Any], results: dict[str, str], done: int, finished: bool
) -> None:
    def change(current: dict[str, Any] | None) -> dict[str, Any]:
        base = current or job
        return base | {
            "done": done,
            "results": dict(results),
            "status": "done" if finished else "running",
            "finished_at": rfc3339(datetime.now(UTC)) if finished else None,
        }

    update(gateway.state, _key(job["job_id"]), change)
