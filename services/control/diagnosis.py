"""Why is it stuck? A diagnosis of one workflow instance, from its history and our records.

`diagnose` is pure: it reads the instance's state, its history rows (plumbing.history: every
wait says which event it is for, every timer when it is due), the app's dead letters, the
instance index's deadline and what the sidecar says of its workflow engine, and says:

- what the instance waits for now: events (a wait the runtime records as a timer named after
  the event, not yet matched by an event of that name) and timers with their due times;
- events that arrived and that no wait took, and which awaited name each resembles (the
  Python SDK matches names case-insensitively, so what strands an event is punctuation or
  spelling: `approval-outcome` for `approval_outcome`);
- activities still running, the last failures and the retry that is due;
- dead letters that belong to the instance's business id;
- whether the sidecar answers and a workflow worker is connected;
- when it last made progress (its last history event), and whether it is past its deadline.

`findings` puts that in sentences, the likeliest reason first.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.concurrency import run_in_threadpool

from contracts.timestamps import rfc3339
from control import instances
from control.views import in_time_order
from plumbing.auth import Reader
from plumbing.gateway import Gateway, InstanceState, NotFound, workflows_of
from plumbing.subscriptions import DEAD_LETTERS_KEY

MAX_FAILURES = 10
LIVE = frozenset({"RUNNING", "PENDING", "SUSPENDED", "STALLED"})


def _at(text: str | None) -> datetime | None:
    if not text:
        return None
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _plain(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.casefold())


def resembles(name: str, awaited: set[str]) -> str | None:
    """The awaited event name `name` was probably meant to be, or None."""
    for wanted in sorted(awaited):
        if _plain(wanted) == _plain(name):
            return wanted
    close = difflib.get_close_matches(name.casefold(), sorted(awaited), n=1, cutoff=0.75)
    return close[0] if close else None


@dataclass(frozen=True)
class Context:
    """What a diagnosis reads besides the history."""

    state: InstanceState
    history: list[dict[str, Any]]
    business_id: str
    dead_letters: list[dict[str, Any]]
    engine: dict[str, Any]
    deadline: datetime | None
    now: datetime


def _waits(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]], set[str]]:
    """(event names waited for and not yet matched, events no wait took, every awaited name)."""
    fired = {r.get("timer_id") for r in rows if r["type"] == "TIMER_FIRED"}
    waits: Counter[str] = Counter()
    spelled: dict[str, str] = {}
    for r in rows:
        if r["type"] == "TIMER_CREATED" and r.get("waits_for") and r["event_id"] not in fired:
            key = r["waits_for"].casefold()
            waits[key] += 1
            spelled.setdefault(key, r["waits_for"])
    raised = [r for r in rows if r["type"] == "EVENT_RAISED" and r.get("name")]
    taken: Counter[str] = Counter()
    unmatched = []
    for r in raised:  # durabletask hands an event to the oldest wait of its name
        key = str(r["name"]).casefold()
        if taken[key] < waits[key]:
            taken[key] += 1
        else:
            unmatched.append(r)
    awaited = set(spelled.values())
    waiting = sorted(spelled[k] for k in waits if waits[k] > taken[k])
    stranded = [
        {
            "name": r["name"],
            "at": r.get("timestamp"),
            "resembles": resembles(str(r["name"]), awaited),
        }
        for r in unmatched
    ]
    return waiting, stranded, awaited


def _timers(rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Timers created and not fired: the workflow's own and retry back-offs, with due times."""
    fired = {r.get("timer_id") for r in rows if r["type"] == "TIMER_FIRED"}
    pending = []
    for r in rows:
        if r["type"] != "TIMER_CREATED" or r["event_id"] in fired or not r.get("fire_at"):
            continue
        due = _at(r["fire_at"])
        pending.append(
            {
                "event_id": r["event_id"],
                "fire_at": r["fire_at"],
                "kind": "retry" if r.get("retry_of") else "timer",
                "overdue": due is not None and due < now,
            }
        )
    return pending


def _activities(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(activities scheduled and not finished, the last failures with their attempt number)."""
    scheduled = {r["event_id"]: r for r in rows if r["type"] == "TASK_SCHEDULED"}
    ended = {
        r.get("task_scheduled_id") for r in rows if r["type"] in ("TASK_COMPLETED", "TASK_FAILED")
    }
    running = [
        {"name": r["name"], "since": r.get("timestamp")}
        for eid, r in scheduled.items()
        if eid not in ended
    ]
    attempts: Counter[str] = Counter()
    failures = []
    for r in rows:
        if r["type"] == "TASK_SCHEDULED":
            attempts[r.get("task_execution_id") or str(r["event_id"])] += 1
        if r["type"] == "TASK_FAILED":
            task = scheduled.get(r.get("task_scheduled_id"), {})
            run = task.get("task_execution_id") or str(task.get("event_id"))
            failures.append(
                {
                    "name": task.get("name"),
                    "at": r.get("timestamp"),
                    "attempt": attempts[run],
                    "failure": r.get("failure"),
                }
            )
    return running, failures[-MAX_FAILURES:]


def belongs(letter: dict[str, Any], business_id: str) -> bool:
    """A dead letter of this business id: its event id is (or starts with) the id, or its
    body names it as `order_id`."""
    event_id = str(letter.get("event_id", ""))
    if event_id == business_id or event_id.startswith(f"{business_id}-"):
        return True
    pattern = rf'"order_id"\s*:\s*"{re.escape(business_id)}"'
    return re.search(pattern, str(letter.get("body", ""))) is not None


def diagnose(c: Context) -> dict[str, Any]:
    """The diagnosis of one instance (the module docstring says what it covers)."""
    rows, state, now = c.history, c.state, c.now
    live = state.status in LIVE
    waiting, stranded, awaited = _waits(rows) if live else ([], [], set())
    timers = _timers(rows, now) if live else []
    running, failures = _activities(rows)
    last = max((t for r in rows if (t := _at(r.get("timestamp")))), default=state.updated_at)
    letters = [d for d in c.dead_letters if belongs(d, c.business_id)]
    past = live and c.deadline is not None and c.deadline < now
    findings = _findings(c, waiting, stranded, timers, running if live else [], failures, past)
    return {
        "instance_id": state.instance_id,
        "name": state.name,
        "status": state.status,
        "custom_status": state.custom_status,
        "summary": findings[0],
        "findings": findings,
        "waiting_for": {"events": waiting, "timers": timers},
        "unconsumed_events": stranded,
        "awaited_events": sorted(awaited),
        "activities": {"running": running if live else [], "failures": failures},
        "dead_letters": letters,
        "runtime": c.engine,
        "last_progress_at": rfc3339(last) if last else None,
        "quiet_for_s": round((now - last).total_seconds(), 1) if last else None,
        "deadline": rfc3339(c.deadline) if c.deadline else None,
        "past_deadline": past,
    }


def _findings(
    c: Context,
    waiting: list[str],
    stranded: list[dict[str, Any]],
    timers: list[dict[str, Any]],
    running: list[dict[str, Any]],
    failures: list[dict[str, Any]],
    past: bool,
) -> list[str]:
    """What the facts mean, in sentences, the likeliest reason it does not go on first."""
    state, out = c.state, []
    if state.status in instances.TERMINAL:
        out.append(f"it has ended ({state.status}): nothing waits" + _failure(state))
    if state.status == "SUSPENDED":
        out.append("it is suspended: nothing runs and events wait until it is resumed")
    if state.status == "STALLED":
        out.append(
            "it is STALLED: a replica whose code lacks a version mark (`is_patched`) in its "
            "history replayed it, as in a rolling deploy (or a rollback); it goes on once a "
            "replica of the newer release takes it: wait for the rollout to finish, and "
            "terminate it only if it stays STALLED after"
        )
    workers = c.engine.get("workflow_workers")
    if c.engine.get("sidecar") != "ok":
        out.append(f"the sidecar does not answer: {c.engine.get('sidecar')}")
    elif workers == 0 and state.status in LIVE:
        out.append("no workflow worker is connected to the sidecar: nothing runs until the app's")
        out[-1] += " worker reconnects (restart the app)"
    for s in stranded:
        hint = (
            f"; it waits for {s['resembles']!r}, which differs only in spelling"
            if s["resembles"]
            else f"; nothing waits for that name (it waits for {', '.join(waiting) or 'nothing'})"
        )
        out.append(f"event {s['name']!r} arrived at {s['at']} and no wait took it{hint}")
    retry = next((t for t in timers if t["kind"] == "retry"), None)
    if failures and state.status in LIVE:
        f = failures[-1]
        more = f"; the next attempt is due at {retry['fire_at']}" if retry else ""
        out.append(f"activity {f['name']!r} failed (attempt {f['attempt']}): {f['failure']}{more}")
    for r in running:
        out.append(f"activity {r['name']!r} has been running since {r['since']}")
    for t in timers:
        if t["overdue"]:
            out.append(f"a {t['kind']} due at {t['fire_at']} has not fired: is the scheduler up?")
    if past and c.deadline is not None:
        out.append(f"it is past its deadline ({rfc3339(c.deadline)})")
    if state.status in LIVE and waiting:
        due = [t["fire_at"] for t in timers if t["kind"] == "timer" and not t["overdue"]]
        until = f", or the timer due at {min(due)}" if due else ""
        out.append(f"it waits for the event{'s' * (len(waiting) > 1)} {', '.join(waiting)}{until}")
    if not out:
        out.append("nothing holds it: it is working" if state.status in LIVE else "no finding")
    return out


def _failure(state: InstanceState) -> str:
    return f"; failure: {state.failure}" if state.failure else ""


def stuck_because(
    entry: instances.Entry,
    state: InstanceState | None,
    history: list[dict[str, Any]],
    quiet: timedelta,
    now: datetime,
) -> list[str]:
    """Why a live indexed instance counts as stuck (empty: it does not): past its deadline, a
    timer overdue, an event no wait took, an activity failing, suspended or quiet (no history
    event) for longer than `quiet` while no timer of its own is still to come. An instance that
    waits for a person before a deadline still ahead is waiting, not stuck."""
    status = state.status if state is not None else entry.status
    if status not in LIVE:
        return []
    why = []
    if entry.deadline is not None and entry.deadline < now:
        why.append(f"past its deadline ({rfc3339(entry.deadline)})")
    _, stranded, _ = _waits(history)
    why += [f"event {s['name']!r} arrived and no wait took it" for s in stranded]
    timers = _timers(history, now)
    why += [f"a {t['kind']} due at {t['fire_at']} has not fired" for t in timers if t["overdue"]]
    _, failures = _activities(history)
    if any(t["kind"] == "retry" for t in timers) and failures:
        why.append(f"activity {failures[-1]['name']!r} is failing: {failures[-1]['failure']}")
    last = max((t for r in history if (t := _at(r.get("timestamp")))), default=None)
    last = last or (state.updated_at if state is not None else None) or entry.updated_at
    ahead = any(t["kind"] == "timer" and not t["overdue"] for t in timers)
    if now - last > quiet and (status != "RUNNING" or not ahead):
        kind = "suspended" if status == "SUSPENDED" else status.lower()
        why.append(f"{kind}, no progress since {rfc3339(last)}")
    return why


def stuck_entries(
    gateway: Gateway, entries: list[instances.Entry], quiet: timedelta, now: datetime
) -> list[tuple[instances.Entry, list[str]]]:
    """The live entries that are stuck, with why; each is read from Dapr (state and history)."""
    wf = workflows_of(gateway)
    found = []
    for e in entries:
        if e.status not in LIVE:
            continue
        state = wf.state(e.instance_id)
        history = in_time_order(wf.history(e.instance_id)) if state is not None else []
        why = stuck_because(e, state, history, quiet, now)
        if why:
            found.append((e, why))
    return found


def business_id(instance_id: str) -> str:
    """The business id an instance is named by: "order-o-1" and "approval-o-1" are "o-1"."""
    return instance_id.split("-", 1)[1] if "-" in instance_id else instance_id


def diagnosis_router() -> APIRouter:
    """GET /workflows/{instance_id}/diagnosis."""
    router = APIRouter(prefix="/workflows", tags=["workflow management"])

    def read(gateway: Gateway, instance_id: str) -> Context:
        wf = workflows_of(gateway)
        state = wf.state(instance_id)
        if state is None:
            raise NotFound(f"no workflow instance {instance_id!r}")
        letters, _ = gateway.state.get(DEAD_LETTERS_KEY)
        entry = instances.entry(gateway.state, instance_id)
        return Context(
            state=state,
            history=in_time_order(wf.history(instance_id)),
            business_id=business_id(instance_id),
            dead_letters=letters or [],
            engine={},
            deadline=entry.deadline if entry else None,
            now=datetime.now(UTC),
        )

    @router.get("/{instance_id}/diagnosis")
    async def diagnose_workflow(
        instance_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
        request: Request,
        _: Reader,
    ) -> dict[str, Any]:
        """Why the instance does (not) go on: what it waits for, events no wait took, failing
        activities, dead letters of its business id, the sidecar and workflow worker, its
        last progress; `findings` in words, the likeliest reason first."""
        gateway: Gateway = request.app.state.gateway
        context = await run_in_threadpool(read, gateway, instance_id)
        engine = (
            await gateway.readiness.engine()
            if gateway.readiness is not None
            else {"sidecar": "not known (no readiness probe)", "workflow_workers": None}
        )
        return diagnose(replace(context, engine=engine))

    return router
