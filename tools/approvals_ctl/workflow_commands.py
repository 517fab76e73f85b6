"""Workflow commands, named like `dapr workflow`: run, get, list, history, wait, raise-event,
suspend, resume, terminate, purge.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from approvals_ctl.client import (
    EXIT_FAIL,
    EXIT_JOB,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    Client,
    CtlError,
    _loads,
    _show,
    _table,
)


def cmd_run(c: Client, a: argparse.Namespace) -> int:
    body = {"name": a.name, "input": _loads(a.input, "--input"), "instance_id": a.instance_id}
    out = c.call("POST", "/workflows", json=body)
    _show(
        a,
        out,
        f"{out['instance_id']}: {'started' if out['created'] else 'exists'} ({out['status']})",
    )
    return EXIT_OK


def cmd_get(c: Client, a: argparse.Namespace) -> int:
    out = c.call("GET", f"/workflows/{a.instance_id}", params={"payloads": a.payloads})
    _show(
        a,
        out,
        "\n".join(
            f"{k:>14}: {json.dumps(v) if isinstance(v, dict) else v}" for k, v in out.items()
        ),
    )
    return EXIT_OK


def cmd_list(c: Client, a: argparse.Namespace) -> int:
    if a.reconcile:
        c.call("POST", "/workflows/reconcile")
    params: dict[str, Any] = {"status": a.filter_status or [], "limit": a.limit, "offset": a.offset}
    for name in ("name", "created_before", "created_after", "updated_before", "updated_after"):
        if getattr(a, name):
            params[name] = getattr(a, name)
    if a.stuck or a.stuck_after:
        params |= {"stuck": True} | ({"stuck_after": a.stuck_after} if a.stuck_after else {})
        print("checking each live instance's history for why it is stuck...", file=sys.stderr)
    out = c.call("GET", "/workflows", params=params)
    columns = ["instance_id", "name", "status", "created_at", "updated_at"]
    rows = out["instances"]
    if "stuck" in params:
        columns, rows = (
            [*columns[:3], "stuck"],
            [r | {"stuck": "; ".join(r["stuck"])} for r in rows],
        )
    _show(a, out, _table(rows, columns) + f"\n{out['total']} in all")
    return EXIT_OK


def _listed(items: list[str]) -> str:
    return ", ".join(items) or "none"


def cmd_diagnose(c: Client, a: argparse.Namespace) -> int:
    out = c.call("GET", f"/workflows/{a.instance_id}/diagnosis")
    waits, runtime = out["waiting_for"], out["runtime"]
    timers = [
        f"{t['kind']} due {t['fire_at']}{' (overdue)' if t['overdue'] else ''}"
        for t in waits["timers"]
    ]
    stranded = [
        f"{e['name']} at {e['at']}" + (f" (meant {e['resembles']}?)" if e["resembles"] else "")
        for e in out["unconsumed_events"]
    ]
    failures = [
        f"{f['name']} attempt {f['attempt']} at {f['at']}: {f['failure']}"
        for f in out["activities"]["failures"]
    ]
    letters = [f"{d['topic']} {d['event_id']}: {d['reason']}" for d in out["dead_letters"]]
    deadline = f"; deadline {out['deadline']}" if out["deadline"] else ""
    lines = [
        f"{out['instance_id']} ({out['name']}): {out['status']}",
        *(f"  - {f}" for f in out["findings"]),
        f"waiting for events: {_listed(waits['events'])}",
        f"timers: {_listed(timers)}",
        f"events no wait took: {_listed(stranded)}",
        f"activity failures: {_listed(failures)}",
        f"dead letters: {_listed(letters)}",
        f"sidecar: {runtime.get('sidecar')}; workflow workers: {runtime.get('workflow_workers')}",
        f"last progress: {out['last_progress_at']} ({out['quiet_for_s']} s ago){deadline}",
    ]
    _show(a, out, "\n".join(lines))
    return EXIT_OK


def _task_id(event: dict[str, Any]) -> Any:
    """The id that pairs an activity's TASK_SCHEDULED with its TASK_COMPLETED (or FAILED)."""
    if not str(event.get("type", "")).startswith("TASK_"):
        return None
    scheduled = event.get("task_scheduled_id")
    return scheduled if scheduled is not None else event.get("event_id")


def cmd_history(c: Client, a: argparse.Namespace) -> int:
    out = c.call("GET", f"/workflows/{a.instance_id}/history")
    rows = [e | {"task": _task_id(e)} for e in out]
    _show(a, out, _table(rows, ["seq", "timestamp", "type", "name", "task"]))
    return EXIT_OK


def cmd_wait(c: Client, a: argparse.Namespace) -> int:
    out = c.call("GET", f"/workflows/{a.instance_id}/wait", params={"timeout": a.timeout})
    _show(a, out, f"{a.instance_id}: {out['status']}")
    return EXIT_OK if out["finished"] else EXIT_FAIL


def cmd_raise(c: Client, a: argparse.Namespace) -> int:
    iid, sep, event = a.target.partition("/")
    if not sep or not event:
        raise CtlError("give the target as INSTANCE_ID/EVENT_NAME", EXIT_USAGE)
    out = c.call("POST", f"/workflows/{iid}/events/{event}", json=_loads(a.input, "--input"))
    _show(a, out, f"{iid}: raised {event}")
    return EXIT_OK


def cmd_transition(verb: str) -> Any:
    def run(c: Client, a: argparse.Namespace) -> int:
        out = c.call("POST", f"/workflows/{a.instance_id}/{verb}", json={"reason": a.reason})
        _show(a, out, f"{a.instance_id}: {out['status']}")
        return EXIT_OK

    return run


def _job(c: Client, a: argparse.Namespace, body: dict[str, Any]) -> int:
    if getattr(a, "only", None):
        body = body | {"instance_ids": a.only}
    job = c.call("POST", "/workflows/jobs", json=body)
    while job["status"] != "done":
        if not a.json:
            print(f"  {job['job_id']}: {job['done']}/{job['total']}", file=sys.stderr)
        time.sleep(0.5)
        job = c.call("GET", f"/workflows/jobs/{job['job_id']}")
    counts: dict[str, int] = {}
    for result in job["results"].values():
        counts[result.split(":")[0]] = counts.get(result.split(":")[0], 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing to do"
    # A dry run lists every instance it would touch; a real run lists what did not go to plan.
    listed = [
        {"instance_id": iid, "result": result}
        for iid, result in sorted(job["results"].items())
        if job["dry_run"] or result not in ("purged", "terminated", "gone")
    ]
    human = f"{job['job_id']} ({job['action']}{', dry run' if job['dry_run'] else ''}): {summary}"
    if listed:
        human = _table(listed, ["instance_id", "result"]) + "\n" + human
    _show(a, job, human)
    return EXIT_JOB if counts.get("failed") else EXIT_OK


TERMINATE_WARNING = (
    "terminate is for workflows that are stuck: it stops them for good, runs no compensation "
    "and decides nothing (the output records who terminated it and why); to stop an order "
    "that can still take an event, cancel it instead (approvals-ctl cancel ORDER)"
)


def _confirm(a: argparse.Namespace, what: str) -> None:
    """Ask before terminating; --yes answers for scripts, and without a terminal it must."""
    if a.yes or a.dry_run:
        return
    if not sys.stdin.isatty():
        raise CtlError(f"{TERMINATE_WARNING}; to terminate {what}, pass --yes", EXIT_USAGE)
    print(f"{TERMINATE_WARNING}.", file=sys.stderr)
    try:
        answer = input(f"Terminate {what}? [y/N] ").strip().lower()
    except (EOFError, KeyboardInterrupt):
        answer = ""
    if answer not in ("y", "yes"):
        raise CtlError("not terminated", EXIT_REFUSED)


def _one_at_a_time(a: argparse.Namespace, verb: str) -> None:
    if a.dry_run:  # one instance is acted on at once; a dry run is a bulk job's
        raise CtlError(f"--dry-run is for bulk jobs: {verb} --all-older-than ...", EXIT_USAGE)
    if a.only:
        raise CtlError(
            f"--only is for bulk jobs: {verb} --all-older-than ... --only ID", EXIT_USAGE
        )


def cmd_terminate(c: Client, a: argparse.Namespace) -> int:
    if a.instance_id:
        if not a.reason:
            raise CtlError("terminate ID needs --reason (it is audited)", EXIT_USAGE)
        _one_at_a_time(a, "terminate")
        _confirm(a, a.instance_id)
        body = {"reason": a.reason}
        out = c.call("POST", f"/workflows/{a.instance_id}/terminate", json=body)
        _show(a, out, f"{a.instance_id}: {out['status']}")
        return EXIT_OK
    which = (
        f"every running instance older than {a.all_older_than}"
        if a.all_older_than
        else ("every running instance past its deadline")
    )
    if a.only:
        which += f", among the {len(a.only)} named"
    _confirm(a, f"{which} ({a.app} app)")
    body = {"action": "terminate", "older_than": a.all_older_than, "dry_run": a.dry_run}
    return _job(c, a, body)


def cmd_purge(c: Client, a: argparse.Namespace) -> int:
    if a.instance_id:
        _one_at_a_time(a, "purge")
        out = c.call("DELETE", f"/workflows/{a.instance_id}")
        _show(a, out, f"{a.instance_id}: purged")
        return EXIT_OK
    return _job(c, a, {"action": "purge", "older_than": a.all_older_than, "dry_run": a.dry_run})


def cmd_retention(c: Client, a: argparse.Namespace) -> int:
    out = c.call("GET", "/retention")
    if not out["enabled"]:
        _show(a, out, f"{a.app}: retention is off (RETENTION_SCHEDULE=off)")
        return EXIT_OK
    when = out["next_run"] or (f"every {out['every']}" if out["every"] else "unknown")
    held = "in step" if out["in_step"] else f"NOT in step: the scheduler holds {out['scheduled']}"
    lines = [
        f"{a.app}: purge finished instances older than {out['age']}"
        + (" (dry run)" if out["dry_run"] else ""),
        f"schedule: {out['schedule']} ({held}); next run: {when}",
    ]
    last = out["last_run"]
    if last:
        counts = ", ".join(f"{n} {what}" for what, n in sorted(last["counts"].items()))
        lines.append(
            f"last run: {last['at']}: {last['job_id']} {last['status']}, "
            f"{last['done']}/{last['total']} instances ({counts or 'nothing to do'})"
        )
    else:
        lines.append("last run: none yet")
    _show(a, out, "\n".join(lines))
    return EXIT_OK
