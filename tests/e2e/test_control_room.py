"""The management API and approvals-ctl on real workflows, as an operator would use them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.flow import Flow
from tests.fakes import TOKENS, bearer
from tests.stack import eventually, unique

pytestmark = pytest.mark.e2e


def run_ctl(stack: Stack, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run approvals-ctl in a subprocess, as a script would: no terminal on stdin."""
    cmd = [
        sys.executable,
        "-m",
        "approvals_ctl",
        "--orders-url",
        stack.apps["orders"].app_url,
        "--approvals-url",
        stack.apps["approvals"].app_url,
        *args,
    ]
    env = {**os.environ, "APPROVALS_TOKEN": TOKENS[who]}
    return subprocess.run(
        cmd,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def ctl(stack: Stack, who: str, *args: str) -> tuple[int, Any]:
    """Run approvals-ctl --json; return (exit code, parsed output or stderr)."""
    done = run_ctl(stack, who, "--json", *args)
    try:
        return done.returncode, json.loads(done.stdout)
    except ValueError:
        return done.returncode, done.stderr


def status(flow: Flow, order_id: str) -> str:
    return (flow.order(order_id) or {}).get("workflow_status", "")


def test_suspend_buffers_a_decision_until_resume_and_live_instances_are_not_purged(
    flow: Flow,
) -> None:
    order = flow.place("1500.00")
    iid = f"order-{order.order_id}"
    flow.pending(order.order_id)
    eventually(  # the order waits for the outcome (its last step before that is done)
        lambda: (flow.order(order.order_id) or {}).get("status") == "awaiting_approval",
        what="the order to await its approval",
    )
    code, out = ctl(flow.stack, "operator", "purge", iid)
    assert code == 4 and "RUNNING: only COMPLETED, FAILED or TERMINATED" in out
    assert ctl(flow.stack, "operator", "suspend", iid, "--reason", "checking stock")[0] == 0
    assert status(flow, order.order_id) == "SUSPENDED"
    code, out = ctl(flow.stack, "operator", "purge", iid)
    assert code == 4 and "SUSPENDED" in out
    assert flow.decide(order.order_id, "manager").status_code == 202
    eventually(
        lambda: (flow.approval(order.order_id) or {}).get("status") == "approved",
        what="the approval to finish while the order is suspended",
    )

    def outcome_arrived() -> list[dict[str, Any]] | None:
        history = flow.http.get(f"{flow.orders}/workflows/{iid}/history").json()
        raised = [e for e in history if e["type"] == "EVENT_RAISED"]
        return history if any(e["name"] == "approval_outcome" for e in raised) else None

    eventually(outcome_arrived, what="the approval's outcome to reach the suspended order")
    assert status(flow, order.order_id) == "SUSPENDED"  # it arrived, and the order kept still
    assert ctl(flow.stack, "operator", "resume", iid, "--reason", "stock ok")[0] == 0
    state = flow.finished(order.order_id)
    assert state["result"]["decided_by"] == "bob"
    code, events = ctl(flow.stack, "viewer", "history", iid)
    assert code == 0
    seq = {
        (e["type"], e["name"] if e["type"] == "EVENT_RAISED" else None): e["seq"] for e in events
    }
    suspended, resumed = seq[("EXECUTION_SUSPENDED", None)], seq[("EXECUTION_RESUMED", None)]
    assert suspended < seq[("EVENT_RAISED", "approval_outcome")] < resumed
    # It took no step while suspended: its next step was scheduled after the resume (a step
    # scheduled before the suspension may still complete meanwhile).
    assert all(
        e["seq"] < suspended or e["seq"] > resumed for e in events if e["type"] == "TASK_SCHEDULED"
    )
    assert any(e["seq"] > resumed for e in events if e["type"] == "TASK_SCHEDULED")


def test_terminate_then_purge_and_the_index_follows(flow: Flow) -> None:
    order = flow.place("2200.00")
    iid = f"order-{order.order_id}"
    flow.pending(order.order_id)
    code, out = ctl(flow.stack, "operator", "terminate", iid, "--reason", "customer cancelled")
    assert code == 2 and "terminate is for workflows that are stuck" in out and "--yes" in out
    assert status(flow, order.order_id) == "RUNNING"
    code, out = ctl(
        flow.stack, "operator", "terminate", iid, "--reason", "customer cancelled", "--yes"
    )
    assert (code, out["status"]) == (0, "TERMINATED")
    code, got = ctl(flow.stack, "viewer", "get", iid, "--payloads")
    assert got["status"] == "TERMINATED"
    assert got["output"] == {"terminated": True, "by": "olga", "reason": "customer cancelled"}
    assert flow.order(order.order_id)["result"] is None
    _, listed = ctl(flow.stack, "viewer", "list", "--filter-status", "TERMINATED")
    assert iid in [i["instance_id"] for i in listed["instances"]]
    assert ctl(flow.stack, "operator", "purge", iid) == (
        0,
        {"instance_id": iid, "status": "purged"},
    )
    code, _ = ctl(flow.stack, "viewer", "get", iid)
    assert code == 3


def test_run_is_idempotent_and_business_events_are_refused(flow: Flow) -> None:
    order_id = unique("o")
    order = {
        "order_id": order_id,
        "customer_id": "c-9",
        "amount": "900.00",
        "currency": "EUR",
        "placed_at": "2026-11-23T10:00:00Z",
    }
    iid = f"order-{order_id}"
    args = ["run", "order_workflow", "--instance-id", iid, "--input", json.dumps(order)]
    assert ctl(flow.stack, "operator", *args)[1]["created"] is True
    assert ctl(flow.stack, "operator", *args)[1]["created"] is False
    flow.pending(order_id)  # the server's policy: 900 EUR waits for a manager
    outcome = {
        "order_id": order_id,
        "outcome": "approved",
        "decided_by": "ops",
        "reason": "manual",
        "decided_at": "2026-11-23T10:01:00Z",
    }
    code, _ = ctl(
        flow.stack,
        "operator",
        "raise-event",
        f"{iid}/approval_outcome",
        "--input",
        json.dumps(outcome),
    )
    assert code == 4  # refused: a business event
    assert status(flow, order_id) == "RUNNING"
    refusals = flow.http.get(
        f"{flow.orders}/audit", params={"target": iid, "action": "raise_workflow_event"}
    ).json()
    assert refusals and refusals[-1]["outcome"].startswith("refused 403")


def test_bulk_purge_older_than_with_dry_run_then_for_real(flow: Flow) -> None:
    orders = [flow.place("30.00") for _ in range(3)]
    for o in orders:
        flow.finished(o.order_id)
    # Only this test's instances: other tests share the stack (and a running one never qualifies).
    running = flow.place("3000.00")
    flow.pending(running.order_id)
    mine = sorted(f"order-{o.order_id}" for o in [*orders, running])
    only = [arg for iid in mine for arg in ("--only", iid)]
    code, dry = ctl(flow.stack, "admin", "purge", "--all-older-than", "1ms", "--dry-run", *only)
    assert code == 0 and dry["dry_run"] is True and dry["instance_ids"] == mine
    finished = {f"order-{o.order_id}" for o in orders}
    assert dry["results"] == dict.fromkeys(finished, "would purge")
    assert all(status(flow, o.order_id) == "COMPLETED" for o in orders)
    code, real = ctl(flow.stack, "admin", "purge", "--all-older-than", "1ms", *only)
    assert code == 0 and real["results"] == dict.fromkeys(finished, "purged")
    assert status(flow, running.order_id) == "RUNNING"
    # The history is gone; each order's record keeps its outcome.
    kept = [flow.order(o.order_id) or {} for o in orders]
    assert [(k.get("status"), k.get("workflow_status")) for k in kept] == [("completed", None)] * 3
    # bulk needs admin (scoped all the same: were the check broken, it would purge only these)
    assert ctl(flow.stack, "operator", "purge", "--all", *only)[0] == 4


def test_bulk_terminate_of_stuck_approvals(flow: Flow) -> None:
    order = flow.place("4000.00")
    flow.pending(order.order_id)
    iid = f"approval-{order.order_id}"
    bulk = ("--app", "approvals", "terminate", "--all-older-than", "1ms", "--only", iid)
    code, dry = ctl(flow.stack, "admin", *bulk, "--dry-run")
    assert code == 0 and dry["results"] == {iid: "would terminate"}
    code, real = ctl(flow.stack, "admin", *bulk, "--yes")
    assert code == 0 and real["results"] == {iid: "terminated"}
    _, got = ctl(flow.stack, "viewer", "--app", "approvals", "get", iid)
    assert got["status"] == "TERMINATED"
    approval = flow.approval(order.order_id)
    assert approval is not None and approval["status"] == "terminated"  # out of the inbox
    pending = flow.http.get(f"{flow.approvals}/approvals", params={"status": "pending"}).json()
    assert order.order_id not in [r["order_id"] for r in pending]


def test_authorisation_negatives_are_refused_and_audited(flow: Flow, tmp_path: Path) -> None:
    orders = flow.stack.apps["orders"].app_url
    _, newest = ctl(flow.stack, "viewer", "audit", "list", "--limit", "1")
    since = str(newest[-1]["seq"])
    iid = f"order-{unique('nobody')}"
    # Refusals of unidentified callers are audited up to a burst per client address, which
    # other tests may have spent for 127.0.0.1: these come from a loopback address of their own.
    octets = secrets.token_bytes(3)
    source = httpx.HTTPTransport(local_address="127." + ".".join(str(1 + b % 254) for b in octets))
    stranger = httpx.Client(transport=source, timeout=10)
    anonymous = stranger.post(
        f"{orders}/workflows/{iid}/suspend", json={"reason": "x"}, headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401
    viewer = flow.http.post(
        f"{orders}/workflows/{iid}/suspend", json={"reason": "x"}, headers=bearer("viewer")
    )
    assert viewer.status_code == 403
    forged = stranger.post(
        f"{orders}/events/orders",
        content=b"{}",
        headers={"content-type": "application/cloudevents+json"},
    )
    stranger.close()
    assert forged.status_code == 401
    # This test's records only: the two refusals aimed at its instance, and the one forged
    # delivery since it began (the stack is shared; nothing else posts without a token).
    _, records = ctl(flow.stack, "viewer", "audit", "list", "--after", since, "--limit", "1000")
    refused = [r["outcome"][:11] for r in records if r["target"] == iid]
    assert refused == ["refused 401", "refused 403"]
    forgeries = [
        r
        for r in records
        if r["action"] == "deliver orders" and r["outcome"].startswith("refused 401")
    ]
    assert len(forgeries) == 1
    code, verdict = ctl(flow.stack, "viewer", "--app", "approvals", "audit", "verify")
    assert code == 0 and verdict["intact"] is True
    anchors = tmp_path / "anchors.json"
    keep = ("audit", "verify", "--full", "--anchor", str(anchors))
    code, verdict = ctl(flow.stack, "viewer", *keep)
    assert code == 0 and verdict["intact"] is True and verdict["full"] is True
    kept = json.loads(anchors.read_text())[orders]
    assert kept == verdict["anchor"] and kept["count"] == verdict["records"] >= 3
    code, verdict = ctl(flow.stack, "viewer", *keep)  # checked against the anchor it kept
    assert code == 0 and verdict["intact"] is True


def test_concurrent_refusals_are_all_recorded_through_the_real_store(flow: Flow) -> None:
    target = unique("race")
    url = f"{flow.orders}/workflows/{target}/suspend"

    def refuse(n: int) -> int:
        headers = {**bearer("viewer"), "x-request-id": f"{target}-{n}"}
        return flow.http.post(url, json={"reason": "x"}, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(refuse, range(60))) == {403}
    records = flow.http.get(
        f"{flow.orders}/audit", params={"target": target, "limit": 100}, headers=bearer("viewer")
    ).json()
    assert sorted(r["request_id"] for r in records) == sorted(f"{target}-{n}" for n in range(60))
    verdict = flow.http.get(
        f"{flow.orders}/audit/verify", params={"full": True}, headers=bearer("viewer")
    ).json()
    assert verdict["intact"] is True, verdict["problems"]


def test_business_verbs_place_an_order_and_decide_it(flow: Flow) -> None:
    order_id = unique("o")
    code, placed = ctl(
        flow.stack,
        "operator",
        "order",
        "place",
        "--order-id",
        order_id,
        "--customer",
        "erin",
        "--amount",
        "1800.00",
    )
    assert (code, placed["instance_id"]) == (0, f"order-{order_id}")
    flow.pending(order_id)
    code, out = ctl(flow.stack, "viewer", "decide", order_id, "--approve")
    assert code == 4 and "it needs approver" in out
    code, decided = ctl(
        flow.stack, "manager", "decide", order_id, "--reject", "--reason", "not this quarter"
    )
    assert code == 0 and decided["decision_id"].startswith("d-")
    state = flow.finished(order_id)
    assert state["result"]["status"] == "rejected"
    assert state["result"]["reason"] == "not this quarter"
    code, out = ctl(
        flow.stack,
        "operator",
        "order",
        "place",
        "--order-id",
        "bad id",
        "--customer",
        "x",
        "--amount",
        "1.001",
    )
    assert code == 4 and "order_id:" in out and "amount:" in out
    yen = ["order", "place", "--customer", "x", "--currency", "JPY", "--order-id"]
    code, placed = ctl(flow.stack, "operator", *yen, unique("o"), "--amount", "9000")
    assert code == 0
    assert placed["amount_text"] == "9000 JPY (49.50 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20)"
    code, out = ctl(flow.stack, "operator", *yen, unique("o"), "--amount", "9000.5")
    assert code == 4 and "JPY has no minor units" in out


def test_options_after_the_command_history_in_time_order_and_a_dry_run_that_lists(
    flow: Flow,
) -> None:
    order = flow.place("35.00")
    flow.finished(order.order_id)
    iid = f"order-{order.order_id}"
    # --json after the command, as after any other option
    done = run_ctl(flow.stack, "viewer", "history", iid, "--json")
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    times = [datetime.fromisoformat(e["timestamp"]) for e in events]
    assert times == sorted(times) and all(t.tzinfo for t in times)
    assert -1 not in [e["event_id"] for e in events]
    assert {"EXECUTION_STARTED", "TASK_SCHEDULED", "EXECUTION_COMPLETED"} <= {
        e["type"] for e in events
    }
    table = run_ctl(flow.stack, "viewer", "history", iid).stdout.splitlines()
    assert table[0].split() == ["SEQ", "TIMESTAMP", "TYPE", "NAME", "TASK"]
    assert [line.split()[0] for line in table[1:]] == [str(n) for n in range(1, len(events) + 1)]
    # "0s": every finished instance (here: among this test's), one per line in a dry run
    dry = run_ctl(
        flow.stack, "admin", "purge", "--all-older-than", "0s", "--dry-run", "--only", iid
    )
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0].split() == ["INSTANCE_ID", "RESULT"]
    assert [" ".join(line.split()) for line in lines[1:-1]] == [f"{iid} would purge"]
    assert lines[-1].startswith("job-") and "(purge, dry run):" in lines[-1]
    assert status(flow, order.order_id) == "COMPLETED"
    code, out = ctl(
        flow.stack,
        "admin",
        "--app",
        "approvals",
        "terminate",
        "--all-older-than",
        "0s",
        "--only",
        f"approval-{order.order_id}",
    )
    assert code == 2  # asks first; and a terminate's 0s is refused by the server:
    code, out = ctl(
        flow.stack,
        "admin",
        "terminate",
        "--all-older-than",
        "0s",
        "--dry-run",
        "--app",
        "approvals",
        "--only",
        f"approval-{order.order_id}",
    )
    assert code == 4 and "0 is for purge only" in out
