"""Scheduled retention: purge the finished workflow instances older than an age, on a schedule.

The schedule is a job in Dapr's scheduler (plumbing.scheduler), not a timer in the app: the
scheduler fires it once per schedule to one replica of the app, keeps it across restarts, and
the app only answers the trigger (`POST /job/retention`, from its sidecar) by starting a bulk
purge job (control.jobs) with the configured age, or a dry run (only when retention is on and
the job's data is what this replica's settings want; otherwise it logs why and skips): the
same job the management API runs, audited the same way (`retention_run` when it starts,
`job_finished` when it ends), and keeping each order's business record before its history
goes. Each app that hosts workflows
schedules its own job at start-up (RETENTION_SCHEDULE, RETENTION_AGE, RETENTION_DRY_RUN) and
replaces it only when the settings changed, so a restart does not move the next run.
`GET /retention` says what is scheduled, when it runs next and what the last run did.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from contracts.timestamps import rfc3339
from control import jobs
from control.bulk import Keeper
from plumbing.audit import AuditLog
from plumbing.auth import Reader
from plumbing.cron import parse_schedule
from plumbing.gateway import Gateway, GatewayError
from plumbing.settings import ServiceSettings
from plumbing.web import require_app_token

log = logging.getLogger(__name__)

RETENTION_JOB = "retention"
LAST_RUN = "retention:last"


def wanted(settings: ServiceSettings) -> dict[str, Any] | None:
    """The job the settings ask for (None: retention is off): its schedule and data."""
    if settings.retention_schedule == "off":
        return None
    age = f"{int(settings.retention_age.total_seconds())}s"
    return {
        "schedule": parse_schedule(settings.retention_schedule).for_dapr,
        "data": {"older_than": age, "dry_run": settings.retention_dry_run},
    }


def ensure_scheduled(gateway: Gateway, settings: ServiceSettings) -> str:
    """Make the scheduler hold the job the settings ask for; say what was done."""
    if gateway.scheduler is None:
        log.warning("retention: this app has no scheduler client; nothing is scheduled")
        return "retention: no scheduler client"
    want, have = wanted(settings), gateway.scheduler.get(RETENTION_JOB)
    if want is None:
        if have is not None:
            gateway.scheduler.delete(RETENTION_JOB)
        said = "retention: off (RETENTION_SCHEDULE=off)"
    elif have == want:
        said = f"retention: scheduled already ({want['schedule']})"
    else:
        gateway.scheduler.schedule(RETENTION_JOB, want["schedule"], want["data"])
        said = (
            f"retention: scheduled {want['schedule']!r}: purge finished instances older than "
            f"{want['data']['older_than']}{' (dry run)' if settings.retention_dry_run else ''}"
        )
    log.info(said)
    return said


def why_not_run(settings: ServiceSettings, data: Any) -> str | None:
    """Why a trigger with the job's `data` must not run here, or None when it may: retention
    is off, or the data is not what this replica's settings want (a job scheduled by another
    release or replica with other settings, or by hand). Keys beyond those are allowed."""
    want = wanted(settings)
    if want is None:
        return "retention is off here (RETENTION_SCHEDULE=off)"
    if not isinstance(data, dict):
        return f"the job's data is not a JSON object; this replica's settings want {want['data']}"
    differ = {k: data.get(k) for k, v in want["data"].items() if data.get(k) != v}
    if differ:
        return f"the job's data has {differ}; this replica's settings want {want['data']}"
    return None


def run(
    gateway: Gateway, audit: AuditLog, settings: ServiceSettings, keep: Keeper
) -> dict[str, Any]:
    """One scheduled run: a bulk purge job of the finished instances older than the age,
    unless the last run's job is still going (then this trigger is skipped)."""
    last, _ = gateway.state.get(LAST_RUN)
    previous = str((last or {}).get("job_id", ""))
    running = jobs.load(gateway.state, previous) if previous else None
    if running is not None and running["status"] != "done":
        log.warning("retention: %s is still running; this trigger is skipped", previous)
        return {"status": "skipped", "reason": f"{previous} is still running"}
    age = f"{int(settings.retention_age.total_seconds())}s"
    body = jobs.JobBody(action="purge", older_than=age, dry_run=settings.retention_dry_run)
    job, targets = jobs.create(gateway, body, RETENTION_JOB)
    audit.append(
        actor=RETENTION_JOB,
        role="scheduler",
        action="retention_run",
        target=job["job_id"],
        outcome="ok",
        reason=f"purge {len(targets)} instances, older_than={age}, dry_run={body.dry_run}",
    )
    at = rfc3339(datetime.now(UTC))
    gateway.state.put(LAST_RUN, {"job_id": job["job_id"], "at": at, "older_than": age})
    jobs.launch(gateway, audit, job["job_id"], keep)
    log.info("retention: started %s over %d instances", job["job_id"], len(targets))
    return {"status": "started", "job_id": job["job_id"], "total": len(targets)}


def status(gateway: Gateway, settings: ServiceSettings, now: datetime) -> dict[str, Any]:
    """What is scheduled, when it runs next, and what the last run did."""
    want = wanted(settings)
    have = gateway.scheduler.get(RETENTION_JOB) if gateway.scheduler is not None else None
    schedule = parse_schedule(settings.retention_schedule) if want else None
    nxt = schedule.next_fire(now) if schedule is not None else None
    last, _ = gateway.state.get(LAST_RUN)
    if last:
        job = jobs.load(gateway.state, last["job_id"]) or {}
        results = Counter(r.split(":")[0] for r in (job.get("results") or {}).values())
        last = last | {
            "dry_run": job.get("dry_run"),
            "status": job.get("status", "gone"),
            "total": job.get("total"),
            "done": job.get("done"),
            "finished_at": job.get("finished_at"),
            "counts": dict(results),
        }
    return {
        "enabled": want is not None,
        "age": _human(settings.retention_age),
        "schedule": settings.retention_schedule,
        "older_than": want["data"]["older_than"] if want else None,
        "dry_run": settings.retention_dry_run,
        "scheduled": have,
        "in_step": have == want,
        "next_run": rfc3339(nxt) if nxt else None,
        "every": f"{int(schedule.every.total_seconds())}s" if schedule and schedule.every else None,
        "last_run": last,
    }


def _human(age: timedelta) -> str:
    """An age in the largest unit it is a whole number of: "90 days", "36 hours", "5 seconds"."""
    seconds = int(age.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' * (n != 1)}"
    return f"{seconds} second{'s' * (seconds != 1)}"


def mount_retention(app: FastAPI, keep: Keeper) -> None:
    """The trigger route, GET /retention, and scheduling the job once the clients are open."""
    settings: ServiceSettings = app.state.settings

    async def trigger(request: Request) -> JSONResponse:
        refused = require_app_token(request, settings.app_api_token)
        if refused is not None:
            return refused
        body = await request.body()
        log.info("retention: triggered by the scheduler (job data %s)", body[:300])
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        # Answered 200 either way: an error would have the scheduler try the trigger again.
        skip = why_not_run(settings, data)
        if skip is not None:
            log.warning("retention: this trigger is skipped: %s", skip)
            return JSONResponse({"status": "skipped", "reason": skip})
        done = await run_in_threadpool(run, app.state.gateway, app.state.audit, settings, keep)
        return JSONResponse(done)

    app.add_api_route(f"/job/{RETENTION_JOB}", trigger, methods=["POST"], include_in_schema=False)
    router = APIRouter(tags=["workflow management"])

    @router.get("/retention")
    def retention_status(request: Request, _: Reader) -> dict[str, Any]:
        """The scheduled purge: its schedule and age, what the scheduler holds, the next run
        (for a cron schedule) and the last run's job with its counts."""
        return status(request.app.state.gateway, settings, datetime.now(UTC))

    app.include_router(router)
    hooks = getattr(app.state, "on_ready", [])
    app.state.on_ready = [*hooks, lambda gateway, audit: schedule_soon(gateway, settings)]


# Seconds before each attempt to schedule the job: a scheduler that is down (it takes about
# 21 s to lead again after a crash) must not hold up the app's start, nor be given up on at once.
ATTEMPTS = (0.0, 2.0, 5.0, 10.0, 30.0, 60.0)


def schedule_soon(gateway: Gateway, settings: ServiceSettings) -> threading.Thread:
    """ensure_scheduled in the background, retried while the scheduler cannot be reached."""

    def attempt() -> None:
        for delay in ATTEMPTS:
            time.sleep(delay)
            try:
                ensure_scheduled(gateway, settings)
                return
            except GatewayError as exc:
                log.warning("retention: could not schedule the job yet: %s", exc)
        log.error(
            "retention: the job could not be scheduled (GET /retention shows it is not in "
            "step); restart the app to try again"
        )

    thread = threading.Thread(target=attempt, name="retention-schedule", daemon=True)
    thread.start()
    return thread
