"""What a bulk job does to its instances, a chunk at a time: purge or terminate, or say what it
would do (dry run); and the Keeper that keeps each instance's business outcome first.

A purge goes by what Dapr does: it purges only an instance that has finished, atomically in
the instance's own actor, and refuses any other. So an instance whose business outcome the
app's record already holds (`Keeper.settled`, one bulk read per chunk) is purged without being
read first; only when Dapr refuses is it read, to say why (`gone`, `skipped: RUNNING`) or that
the purge failed. Every other instance is read first, its outcome kept, then purged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from typing import Any

from control import instances
from plumbing.gateway import Gateway, GatewayError, InstanceState, workflows_of
from plumbing.tracing import untraced

log = logging.getLogger(__name__)


def _keep_nothing(gateway: Gateway, state: InstanceState) -> None:
    return None


def _every_one(gateway: Gateway, instance_ids: list[str]) -> set[str]:
    return set(instance_ids)


@dataclass(frozen=True)
class Keeper:
    """Keeps an instance's business outcome in the app's own record when it is terminated and
    before its history is purged (WorkflowRules.keep). `settled` names, from one bulk read, the
    instances whose outcome the record holds already: nothing to keep before their purge."""

    keep: Callable[[Gateway, InstanceState], None] = _keep_nothing
    settled: Callable[[Gateway, list[str]], set[str]] = _every_one

    def __call__(self, gateway: Gateway, state: InstanceState) -> None:
        self.keep(gateway, state)


NOTHING_TO_KEEP = Keeper()


def terminated_output(who: str, reason: str) -> dict[str, Any]:
    """The output of an instance an operator or a job terminated: never a business outcome."""
    return {"terminated": True, "by": who, "reason": reason}


def as_terminated(state: InstanceState, output: dict[str, Any]) -> InstanceState:
    """The instance as it is once the terminate it was just sent has taken effect."""
    return replace(state, status="TERMINATED", output=json.dumps(output))


# A chunk under way: each instance with the future of what happens to it.
Started = list[tuple[str, Future[str]]]


def start_chunk(
    gateway: Gateway, job: dict[str, Any], chunk: list[str], keep: Keeper, pool: Executor
) -> Started:
    """Set the chunk's instances going on the pool, side by side."""
    settled: set[str] = set()
    if job["action"] == "purge" and not job["dry_run"]:
        try:
            settled = keep.settled(gateway, chunk)
        except GatewayError as exc:  # then each is read and kept first, as any other
            log.warning("%s: outcomes not checked in bulk: %s", job["job_id"], exc)
    return [(i, pool.submit(_attempt, gateway, job, i, keep, i in settled)) for i in chunk]


def results_of(started: Started) -> dict[str, str]:
    """What happened to each instance of a chunk, once it has."""
    return {iid: future.result() for iid, future in started}


def stop(started: Started) -> None:
    """Drop what of a chunk has not begun; what has, ends."""
    for _, future in started:
        future.cancel()


def _attempt(gateway: Gateway, job: dict[str, Any], iid: str, keep: Keeper, settled: bool) -> str:
    try:
        with untraced():
            if job["action"] == "terminate":
                return _terminate(gateway, job, iid, keep)
            if settled:
                return _purge_settled(gateway, iid)
            return _purge(gateway, job, iid, keep)
    except GatewayError as exc:
        return f"failed: {exc}"[:300]


def _purge_settled(gateway: Gateway, iid: str) -> str:
    """Purge an instance with nothing to keep; Dapr refuses one that has not finished."""
    wf = workflows_of(gateway)
    try:
        # Our workflows start no child workflows (their tests' harness refuses them), so Dapr's
        # search for children, a second read of the whole instance, is skipped.
        wf.purge(iid, recursive=False)
        return "purged"
    except GatewayError as exc:
        refused = exc
    try:  # why it was refused
        state = wf.state(iid)
    except GatewayError:
        raise refused from None
    if state is None:
        return "gone"
    if state.status not in instances.TERMINAL:
        return f"skipped: {state.status}"
    raise refused


def _purge(gateway: Gateway, job: dict[str, Any], iid: str, keep: Keeper) -> str:
    wf = workflows_of(gateway)
    state = wf.state(iid)
    if state is None:
        return "gone"
    if state.status not in instances.TERMINAL:
        return f"skipped: {state.status}"
    if job["dry_run"]:
        return "would purge"
    keep(gateway, state)
    wf.purge(iid, recursive=False)
    return "purged"


def _terminate(gateway: Gateway, job: dict[str, Any], iid: str, keep: Keeper) -> str:
    wf = workflows_of(gateway)
    state = wf.state(iid)
    if state is None:
        return "gone"
    if state.status in instances.TERMINAL:
        return f"skipped: {state.status}"
    if job["dry_run"]:
        return "would terminate"
    output = terminated_output(job["job_id"], "stuck")
    wf.terminate(iid, output)
    keep(gateway, as_terminated(state, output))
    return "terminated"


def reindex(gateway: Gateway, job_id: str, results: dict[str, str]) -> None:
    """Bring the instance index up to date with these results."""
    gone = [i for i, r in results.items() if r in ("purged", "gone")]
    terminated = [i for i, r in results.items() if r == "terminated"]
    try:
        instances.forget_many(gateway.state, gone)
        for iid in terminated:
            instances.set_status(gateway.state, iid, "TERMINATED")
    except GatewayError as exc:  # the index is rebuilt by reconcile; the job goes on
        log.warning("%s: index not updated for %d instances: %s", job_id, len(results), exc)
