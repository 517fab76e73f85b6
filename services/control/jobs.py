"""Bulk jobs over this app's workflow instances: purge or terminate many, with a dry run.

A job is a record in the state store ("job:<id>") with its targets, its progress and what
happened to each instance; the work runs in a thread of the app, a chunk of 64 instances at a
time, 16 side by side (control.bulk), saving progress after each chunk while the instance
index catches up with the chunk before. What Dapr says about each instance decides what is
done to it, so a job is safe to run again, and it is: the thread holds the job under a lease it
renews with each chunk, and a job whose lease ran out (its app died) is taken up where it
stopped by the next replica of the app that starts, once the lease runs out, or that is asked
about it (`resume`, `keep_resuming`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from contracts.policy import parse_duration
from contracts.timestamps import rfc3339
from control import bulk, instances
from control.bulk import NOTHING_TO_KEEP, Keeper
from plumbing.audit import AuditLog, AuditUnavailable
from plumbing.gateway import Gateway, GatewayError, StateStore
from plumbing.metrics import result_kind
from plumbing.state import update

log = logging.getLogger(__name__)

LONGEST = timedelta(days=36500)
JOB_CHUNK = 64
# Instances handled side by side. Purges are a round trip each through the sidecar: a bare loop
# waits for each in turn; 16 at a time keep the sidecar busy (docs/operations.md, "Performance").
JOB_WORKERS = 16
# How long a job is held without news from its runner before another may take it up: a chunk
# takes well under a second; a runner that is alive renews it after every chunk.
JOB_LEASE = timedelta(seconds=30)
RUNNING_JOBS = "jobs-running"  # the ids of the jobs not done yet
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
        "targets": targets,
        "runner": None,
        "lease_until": None,
        "resumed": 0,
    }
    gateway.state.put(_key(job_id), job)
    _running(gateway.state, add=job_id)
    return public(job), targets


def public(job: dict[str, Any]) -> dict[str, Any]:
    """A job as the API shows it: without its target list and lease."""
    return {k: v for k, v in job.items() if k not in ("targets", "runner", "lease_until")}


def _running(state: StateStore, add: str | None = None, remove: str | None = None) -> list[str]:
    def change(ids: list[str] | None) -> list[str] | None:
        now = [i for i in ids or [] if i != remove] + ([add] if add else [])
        return now if now != (ids or []) else None

    return update(state, RUNNING_JOBS, change) or []


def launch(gateway: Gateway, audit: AuditLog, job_id: str, keep: Keeper = NOTHING_TO_KEEP) -> bool:
    """Take the job's lease and run it in the background; False if it runs elsewhere."""
    runner = uuid.uuid4().hex
    if _take(gateway.state, job_id, runner) is None:
        return False
    args = (gateway, audit, job_id, runner, keep)
    threading.Thread(target=run_job, args=args, daemon=True).start()
    return True


def resume(gateway: Gateway, audit: AuditLog, keep: Keeper = NOTHING_TO_KEEP) -> list[str]:
    """Take up every job not done whose runner stopped renewing its lease (its app died)."""
    resumed = []
    for job_id in _running(gateway.state):
        job = load(gateway.state, job_id)
        if job is None or job["status"] == "done":
            _running(gateway.state, remove=job_id)
        elif lease_over(job) and launch(gateway, audit, job_id, keep):
            log.warning(
                "%s: its runner stopped; resuming at %d/%d", job_id, job["done"], job["total"]
            )
            resumed.append(job_id)
    return resumed


def keep_resuming(gateway: Gateway, audit: AuditLog, keep: Keeper = NOTHING_TO_KEEP) -> None:
    """`resume` now, and again when the earliest lease still held elsewhere runs out. An app
    restarted quickly finds its own dead runner's lease still live; without this the job would
    wait for someone to ask about it. Checks stop once no job is held elsewhere."""
    try:
        resume(gateway, audit, keep)
        leases = [
            datetime.fromisoformat(job["lease_until"])
            for job_id in _running(gateway.state)
            if (job := load(gateway.state, job_id)) and job["status"] != "done"
            if job.get("lease_until")
        ]
    except GatewayError as exc:
        log.warning("bulk jobs not checked for a stopped runner: %s; trying again later", exc)
        leases = [datetime.now(UTC) + JOB_LEASE]
    if leases:
        wait = (min(leases) - datetime.now(UTC)).total_seconds() + 1
        timer = threading.Timer(max(wait, 1), keep_resuming, (gateway, audit, keep))
        timer.daemon = True
        timer.start()


def lease_over(job: dict[str, Any], now: datetime | None = None) -> bool:
    """Whether the job's runner stopped renewing its lease (or none holds it)."""
    until = job.get("lease_until")
    return until is None or datetime.fromisoformat(until) <= (now or datetime.now(UTC))


def _take(state: StateStore, job_id: str, runner: str) -> dict[str, Any] | None:
    """Hold the job for `runner` for JOB_LEASE: the job, or None if another runner holds it
    (or it is done)."""
    taken: dict[str, Any] | None = None

    def change(job: dict[str, Any] | None) -> dict[str, Any] | None:
        nonlocal taken
        taken = None
        if job is None or job["status"] == "done":
            return None
        if job.get("runner") not in (None, runner) and not lease_over(job):
            return None
        until = rfc3339(datetime.now(UTC) + JOB_LEASE)
        again = int(job.get("runner") not in (None, runner))
        taken = job | {"runner": runner, "lease_until": until}
        taken["resumed"] = job.get("resumed", 0) + again
        return taken

    update(state, _key(job_id), change)
    return taken


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
    gateway: Gateway, audit: AuditLog, job_id: str, runner: str, keep: Keeper = NOTHING_TO_KEEP
) -> None:
    """Work through the targets not done yet in chunks, saving progress and renewing the lease
    after each chunk; stop if another runner took the job over. The next chunk is under way
    while one ends and is saved, as long as the lease renewed last has most of its time left."""
    job = load(gateway.state, job_id)
    if job is None:
        return
    results: dict[str, str] = dict(job["results"])
    progress = gateway.metrics.bulk_job_instances
    todo = [t for t in job["targets"] if t not in results]
    chunks = [todo[n : n + JOB_CHUNK] for n in range(0, len(todo), JOB_CHUNK)]
    # A runner that stopped may have left its last results out of the index: they go in again.
    unindexed: dict[str, str] = dict(results)
    indexing: Future[None] | None = None
    renewed = time.monotonic()
    with ThreadPoolExecutor(max_workers=JOB_WORKERS) as pool:
        started = bulk.start_chunk(gateway, job, chunks[0], keep, pool) if chunks else []
        for n in range(len(chunks)):
            following: bulk.Started | None = None
            if n + 1 < len(chunks) and time.monotonic() - renewed < JOB_LEASE.total_seconds() / 2:
                following = bulk.start_chunk(gateway, job, chunks[n + 1], keep, pool)
            done = bulk.results_of(started)
            results |= done
            for result in done.values():
                progress.labels(action=job["action"], result=result_kind(result)).inc()
            if indexing is not None:
                indexing.result()
            # The index catches up on a worker while the next chunk goes on.
            indexing = pool.submit(bulk.reindex, gateway, job_id, unindexed | done)
            unindexed = {}
            if not _save(gateway, job_id, runner, results, finished=False):
                log.warning("%s: taken over by another runner; this one stops", job_id)
                bulk.stop(following or [])
                return
            renewed = time.monotonic()
            if following is None and n + 1 < len(chunks):
                following = bulk.start_chunk(gateway, job, chunks[n + 1], keep, pool)
            started = following or []
        if indexing is not None:
            indexing.result()
    bulk.reindex(gateway, job_id, unindexed)
    if not _save(gateway, job_id, runner, results, finished=True):
        return
    _running(gateway.state, remove=job_id)
    failed = sum(1 for r in results.values() if r.startswith("failed"))
    gateway.metrics.bulk_jobs.labels(
        action=job["action"], outcome="failed" if failed else "ok"
    ).inc()
    try:
        audit.append(
            actor=job["actor"],
            role="admin",
            action="job_finished",
            target=job_id,
            outcome="ok" if not failed else f"failed: {failed}",
            reason=f"{job['action']}: {len(results)} instances, {failed} failed",
        )
    except AuditUnavailable:
        log.exception("could not audit the end of %s", job_id)


def _save(
    gateway: Gateway, job_id: str, runner: str, results: dict[str, str], finished: bool
) -> bool:
    """Record progress and renew the lease; False if the job is no longer this runner's."""
    mine = True

    def change(job: dict[str, Any] | None) -> dict[str, Any] | None:
        nonlocal mine
        mine = job is not None and job.get("runner") == runner and job["status"] != "done"
        if not mine:
            return None
        return job | {  # type: ignore[operator]
            "done": len(results),
            "results": dict(results),
            "status": "done" if finished else "running",
            "finished_at": rfc3339(datetime.now(UTC)) if finished else None,
            "lease_until": rfc3339(datetime.now(UTC) + JOB_LEASE),
        }

    update(gateway.state, _key(job_id), change)
    return mine
