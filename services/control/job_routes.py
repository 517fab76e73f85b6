"""The /workflows/jobs routes: start a bulk purge or terminate (admin) and follow it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from control import jobs
from control.auditing import audit_log, audited
from control.bulk import Keeper
from plumbing.auth import Admin, Reader
from plumbing.gateway import Gateway, NotFound


def job_router(keep: Keeper) -> APIRouter:
    """The bulk-job routes; `keep` keeps each instance's business outcome before it goes."""
    router = APIRouter(prefix="/workflows", tags=["workflow management"])

    def gateway_of(request: Request) -> Gateway:
        return request.app.state.gateway  # type: ignore[no-any-return]

    @router.post("/jobs", status_code=202)
    def start_job(body: jobs.JobBody, request: Request, admin: Admin) -> dict[str, Any]:
        """Start a bulk purge or terminate; poll GET /workflows/jobs/{job_id} for progress."""
        gateway = gateway_of(request)
        job, targets = jobs.create(gateway, body, admin.id)
        reason = (
            f"{body.action} {len(targets)} instances, "
            f"older_than={body.older_than}, dry_run={body.dry_run}"
        )
        with audited(request, target=job["job_id"], reason=reason):
            jobs.launch(gateway, audit_log(request), job["job_id"], keep)
        return job

    @router.get("/jobs/{job_id}")
    def get_job(
        job_id: Annotated[str, Path(pattern=r"^job-[0-9a-f]{12}$")], request: Request, _: Reader
    ) -> dict[str, Any]:
        """A bulk job: status, progress, and what happened to each instance. A job whose
        runner died (its app restarted) is taken up again here, where it stopped."""
        gateway = gateway_of(request)
        job = jobs.load(gateway.state, job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        if (
            job["status"] != "done"
            and jobs.lease_over(job)
            and jobs.resume(gateway, audit_log(request), keep)
        ):
            job = jobs.load(gateway.state, job_id) or job
        return jobs.public(job)

    return router
