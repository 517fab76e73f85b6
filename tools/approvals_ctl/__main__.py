"""approvals-ctl: steer the order and approval workflows through their management API.

Workflow commands (named like `dapr workflow`) act on the app chosen with --app:
  run, get, list, history, wait, raise-event, suspend, resume, terminate, purge
Business commands:
  order place     publish an OrderPlaced (orders app)
  order get       one order: status, approval stage, amount, result (--wait, --until)
  approval get    one approval: tier, stage, due time, decision log (--wait)
  decide          approve or reject an order's approval (approvals app, as the token's approver)
  audit list      the audit log, a page at a time;  audit verify   check its keyed chain and
                  checkpoints on the server, optionally against an anchor file you keep
  keys new        a new signing key pair for orders or approvals (offline)
  tokens new      a random api token and its token-table entry, by digest (offline)

Settings: APPROVALS_TOKEN (a bearer token, see secrets/dev-secrets.json for the development
ones; --token works too, with a warning: a command line is visible to every user in `ps`);
--orders-url / ORDERS_URL (http://127.0.0.1:8101) and --approvals-url / APPROVALS_URL
(http://127.0.0.1:8102). These, --app, --json and --timeout-s go before or after the command.

Terminate is for stuck workflows and asks first (--yes answers for scripts).

Exit codes: 0 done; 1 the service failed or could not be reached; 2 usage error; 3 not found;
4 refused (401, 403, 409, 410, 422, or "no" at a prompt); 5 the audit log is not intact; 6 a
bulk job had failures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import httpx

from contracts.signing import UnusableKey, new_key_pair
from plumbing.auth import AuthConfigError, TokenTable, new_token_entry

TOKEN_WARNING = (
    "warning: --token shows the token to anyone who can list processes (ps) and may land in "
    "your shell history; set APPROVALS_TOKEN instead"
)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_BROKEN, EXIT_JOB = range(7)


class CtlError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        self.http = httpx.Client(timeout=args.timeout_s, headers=headers)

    def base(self, app: str | None = None) -> str:
        chosen = app or self.args.app
        return str(self.args.orders_url if chosen == "orders" else self.args.approvals_url)

    def call(self, method: str, path: str, app: str | None = None, **kw: Any) -> Any:
        resp = self.send(method, path, app, **kw)
        return resp.json() if resp.content else None

    def send(self, method: str, path: str, app: str | None = None, **kw: Any) -> httpx.Response:
        url = self.base(app).rstrip("/") + path
        try:
            resp = self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise CtlError(f"cannot reach {url}: {exc}", EXIT_FAIL) from None
        if resp.status_code < 300:
            return resp
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        code = (
            EXIT_NOT_FOUND
            if resp.status_code == 404
            else EXIT_REFUSED
            if resp.status_code in (401, 403, 409, 410, 413, 422)
            else EXIT_FAIL
        )
        raise CtlError(f"{resp.status_code}: {detail}", code)


def _loads(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise CtlError(f"{what} must be JSON (got {text!r})", EXIT_USAGE) from None


def _show(args: argparse.Namespace, data: Any, human: str | None = None) -> None:
    if args.json or human is None:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(human)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"

    def cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        return "" if value is None else str(value)

    widths = {c: max(len(c), *(len(cell(r, c)) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(cell(r, c).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


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
    out = c.call("GET", "/workflows", params=params)
    human = (
        _table(out["instances"], ["instance_id", "name", "status", "created_at", "updated_at"])
        + f"\n{out['total']} in all"
    )
    _show(a, out, human)
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
    "and decides nothing (the output records who terminated it and why)"
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
    _confirm(a, f"{which} ({a.app} app)")
    return _job(c, a, {"action": "terminate", "older_than": a.all_older_than, "dry_run": a.dry_run})


def cmd_purge(c: Client, a: argparse.Namespace) -> int:
    if a.instance_id:
        _one_at_a_time(a, "purge")
        out = c.call("DELETE", f"/workflows/{a.instance_id}")
        _show(a, out, f"{a.instance_id}: purged")
        return EXIT_OK
    return _job(c, a, {"action": "purge", "older_than": a.all_older_than, "dry_run": a.dry_run})


def cmd_place(c: Client, a: argparse.Namespace) -> int:
    body = {
        "order_id": a.order_id,
        "customer_id": a.customer,
        "amount": a.amount,
        "currency": a.currency,
    }
    out = c.call("POST", "/orders", app="orders", json=body)
    # The server's amount_text: the amount as accepted, so the CLI never formats money itself.
    _show(
        a,
        out,
        f"order {out['order_id']} placed: {out['amount_text']}; workflow {out['instance_id']}",
    )
    return EXIT_OK


def _fields(data: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    """One line per field that has a value, for people."""
    return "\n".join(
        f"{k:>14}: {json.dumps(v) if isinstance(v, (dict, list)) else v}"
        for k, v in data.items()
        if v not in (None, "", [], {}) and k not in skip
    )


def cmd_order_get(c: Client, a: argparse.Namespace) -> int:
    params: dict[str, Any] = {"wait": a.wait}
    if a.until:
        params["until"] = a.until
    out = c.call("GET", f"/orders/{a.order_id}", app="orders", params=params)
    _show(a, out, _fields(out, skip=("workflow",)))
    if a.until and not out.get("reached"):
        print(f"error: order {a.order_id} is {out['status']}, not {a.until} yet", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def cmd_approval_get(c: Client, a: argparse.Namespace) -> int:
    out = c.call("GET", f"/approvals/{a.order_id}", app="approvals", params={"wait": a.wait})
    log = _table(out.get("log", []), ["at", "kind", "stage", "tier", "approver_id", "note"])
    _show(a, out, _fields(out, skip=("log",)) + "\n" + log)
    return EXIT_OK


def cmd_decide(c: Client, a: argparse.Namespace) -> int:
    body = {"approved": a.approve, "reason": a.reason}
    out = c.call("POST", f"/approvals/{a.order_id}/decisions", app="approvals", json=body)
    _show(a, out, f"decision {out['decision_id']} on {a.order_id} submitted")
    return EXIT_OK


def cmd_tokens_new(c: Client, a: argparse.Namespace) -> int:
    spec = f"{a.principal}:{a.roles}" + (f":{a.level}" if a.level else "")
    token, key = new_token_entry()
    try:
        TokenTable.parse({key: spec})
    except AuthConfigError as exc:
        raise CtlError(str(exc).replace("api token entry 1", "the entry"), EXIT_USAGE) from None
    print(json.dumps({"token": token, "api-tokens entry": {key: spec}}, indent=2))
    print(
        "Give the token to its holder once; put only the entry (a digest) in the api-tokens "
        "secret.",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_keys_new(c: Client, a: argparse.Namespace) -> int:
    try:
        signing, public = new_key_pair(a.key_id)
    except UnusableKey as exc:
        raise CtlError(str(exc), EXIT_USAGE) from None
    print(json.dumps({"signing-key": signing, f"{a.signer}-verify-keys": public}, indent=2))
    return EXIT_OK


def cmd_audit_list(c: Client, a: argparse.Namespace) -> int:
    wanted = {
        "actor": a.actor,
        "action": a.action,
        "target": a.target,
        "outcome": a.outcome,
        "limit": a.limit,
        "before_seq": a.before,
        "after_seq": a.after,
    }
    resp = c.send("GET", "/audit", params={k: v for k, v in wanted.items() if v is not None})
    out = resp.json()
    _show(a, out, _table(out, ["seq", "at", "actor", "action", "target", "outcome"]))
    if not a.json:  # the Link header says where the next pages start
        for rel, way, flag, param in (
            ("prev", "older", "--before", "before_seq"),
            ("next", "newer", "--after", "after_seq"),
        ):
            if rel in resp.links:
                seq = httpx.URL(resp.links[rel]["url"]).params.get(param)
                print(f"  more {way}: {flag} {seq}", file=sys.stderr)
    return EXIT_OK


def _anchors(path: str | None) -> dict[str, Any]:
    if not path or not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            kept = json.load(f)
    except (OSError, ValueError) as exc:
        raise CtlError(f"cannot read the anchor file {path}: {exc}", EXIT_USAGE) from None
    return kept if isinstance(kept, dict) else {}


def cmd_audit_verify(c: Client, a: argparse.Namespace) -> int:
    anchors = _anchors(a.anchor)
    params: dict[str, Any] = {"full": a.full}
    kept = anchors.get(c.base())
    if isinstance(kept, dict) and {"count", "head"} <= kept.keys():
        params |= {"anchor_count": kept["count"], "anchor_head": kept["head"]}
    out = c.call("GET", "/audit/verify", params=params)
    out["app"] = a.app
    if a.anchor and out["intact"] and out.get("anchor") and out["anchor"]["count"]:
        anchors[c.base()] = out["anchor"]
        try:
            with open(a.anchor, "w") as f:
                json.dump(anchors, f, indent=2)
        except OSError as exc:
            raise CtlError(f"cannot write the anchor file {a.anchor}: {exc}", EXIT_FAIL) from None
    human = f"{a.app}: {out['summary']}"
    if len(out["problems"]) > 1:
        human += "".join(f"\n  {p}" for p in out["problems"])
    _show(a, out, human)
    return EXIT_OK if out["intact"] else EXIT_BROKEN


def _global_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    """Options every command takes, before or after its name. Where they follow the command,
    its parser has no defaults (SUPPRESS), so it keeps what the main parser read."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    g = p.add_argument_group("global options (before or after the command)")
    g.add_argument(
        "--app",
        choices=["orders", "approvals"],
        default=default(os.environ.get("APPROVALS_CTL_APP", "orders")),
        help="whose workflows (default orders)",
    )
    g.add_argument(
        "--token",
        default=default(None),
        help="bearer token; prefer APPROVALS_TOKEN in the environment (a command line shows in ps)",
    )
    g.add_argument(
        "--orders-url", default=default(os.environ.get("ORDERS_URL", "http://127.0.0.1:8101"))
    )
    g.add_argument(
        "--approvals-url",
        default=default(os.environ.get("APPROVALS_URL", "http://127.0.0.1:8102")),
    )
    g.add_argument(
        "--json", action="store_true", default=default(False), help="print JSON for scripts"
    )
    g.add_argument("--timeout-s", type=float, default=default(70.0), help="HTTP timeout in seconds")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="approvals-ctl",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(p, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, defaults=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help, description=help, parents=[common])
        cmd.set_defaults(fn=fn)
        return cmd

    run = add("run", cmd_run, "start a workflow (an existing instance id is not started again)")
    run.add_argument("name")
    run.add_argument("--instance-id")
    run.add_argument("--input", help="JSON input")
    get = add("get", cmd_get, "show one instance")
    get.add_argument("instance_id")
    get.add_argument("--payloads", action="store_true", help="include input and output")
    lst = add("list", cmd_list, "list instances from the index")
    lst.add_argument(
        "--filter-status",
        action="append",
        metavar="STATUS",
        help="RUNNING, COMPLETED, FAILED, TERMINATED, SUSPENDED, ... (repeatable)",
    )
    lst.add_argument("--name")
    for edge in ("created-before", "created-after", "updated-before", "updated-after"):
        lst.add_argument(f"--{edge}", metavar="ISO-8601")
    lst.add_argument("--limit", type=int, default=100)
    lst.add_argument("--offset", type=int, default=0)
    lst.add_argument("--reconcile", action="store_true", help="rebuild the index from Dapr first")
    hist = add("history", cmd_history, "show an instance's execution history")
    hist.add_argument("instance_id")
    wait = add("wait", cmd_wait, "wait for an instance to finish (exit 1 if it did not)")
    wait.add_argument("instance_id")
    wait.add_argument("--timeout", type=float, default=30.0, help="seconds, at most 60")
    rse = add("raise-event", cmd_raise, "raise an event: raise-event ID/EVENT --input JSON")
    rse.add_argument("target", metavar="ID/EVENT")
    rse.add_argument("--input", help="JSON data of the event")
    for verb in ("suspend", "resume"):
        cmd = add(verb, cmd_transition(verb), f"{verb} an instance (the reason is audited)")
        cmd.add_argument("instance_id")
        cmd.add_argument("--reason", required=True)
    term = add(
        "terminate",
        cmd_terminate,
        "for stuck workflows: stop one instance for good, or (admin) every running one older "
        "than a duration, or past its deadline; it runs no compensation and decides nothing. "
        "Asks first (--yes to skip)",
    )
    target = term.add_mutually_exclusive_group(required=True)
    target.add_argument("instance_id", nargs="?")
    target.add_argument("--all-older-than", metavar="DURATION", help='e.g. "72h"')
    target.add_argument("--stuck", action="store_true", help="running past their deadline")
    term.add_argument(
        "--reason", help="why (required for one instance; audited and kept as its output)"
    )
    term.add_argument("--dry-run", action="store_true", help="bulk: list, terminate nothing")
    term.add_argument("--yes", action="store_true", help="do not ask before terminating")
    purge = add("purge", cmd_purge, "purge one finished instance, or (admin) many")
    target = purge.add_mutually_exclusive_group(required=True)
    target.add_argument("instance_id", nargs="?")
    target.add_argument("--all", action="store_true", help="every finished instance")
    target.add_argument(
        "--all-older-than",
        metavar="DURATION",
        help='finished longer ago than, e.g. "720h"; "0s" is every finished one',
    )
    purge.add_argument("--dry-run", action="store_true", help="bulk: list, purge nothing")

    tokens = sub.add_parser("tokens", help="api tokens: new").add_subparsers(
        dest="verb", required=True
    )
    tn = tokens.add_parser(
        "new",
        parents=[common],
        help="make a random api token and its token-table entry (by digest)",
        description="print a new random bearer token and the api-tokens secret entry that "
        "names it by its SHA-256 digest (offline)",
    )
    tn.set_defaults(fn=cmd_tokens_new)
    tn.add_argument("--principal", required=True, help='who it is, e.g. "ada"')
    tn.add_argument("--roles", required=True, help="admin, operator, approver, viewer (comma list)")
    tn.add_argument("--level", choices=["manager", "vp"], help="an approver's level")
    keys = sub.add_parser("keys", help="signing keys: new").add_subparsers(
        dest="verb", required=True
    )
    kn = keys.add_parser(
        "new",
        parents=[common],
        help="make an Ed25519 key pair for a signing app (orders or approvals)",
        description="print a new signing secret (for that app only) and its public key (for "
        "every consumer), as JSON; see docs/operations.md, 'Signed messages'",
    )
    kn.set_defaults(fn=cmd_keys_new)
    kn.add_argument("--key-id", required=True, help='e.g. "approvals-2026-11" (unique per key)')
    kn.add_argument("--for", dest="signer", choices=["orders", "approvals"], required=True)
    order = sub.add_parser("order", help="orders: place").add_subparsers(dest="verb", required=True)
    place = order.add_parser(
        "place",
        parents=[common],
        help="publish an OrderPlaced",
        description="publish an OrderPlaced through the orders app",
    )
    place.set_defaults(fn=cmd_place)
    place.add_argument("--order-id", required=True)
    place.add_argument("--customer", required=True)
    place.add_argument(
        "--amount",
        required=True,
        help="in the currency's own minor units: 2500 or 2500.00 EUR, 9000 JPY, 12.345 BHD",
    )
    place.add_argument("--currency", default="EUR", help="ISO 4217 code the policy accepts")
    oget = order.add_parser(
        "get",
        help="show one order",
        description="show one order (orders app): its status, approval stage, amount, result "
        "and times; it outlives its workflow. Reads are eventually consistent: --wait waits "
        "for an order just placed to appear, --until for it to reach a status (exit 1 if it "
        "did not in time)",
    )
    oget.set_defaults(fn=cmd_order_get)
    oget.add_argument("order_id")
    oget.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="at most 60")
    oget.add_argument(
        "--until",
        choices=[
            "accepted",
            "received",
            "awaiting_approval",
            "approved",
            "completed",
            "rejected",
            "expired",
            "failed",
            "cancelled",
            "terminated",
        ],
        help="with --wait: until the order is at this status or later (or has ended)",
    )
    approval = sub.add_parser("approval", help="approvals: get").add_subparsers(
        dest="verb", required=True
    )
    aget = approval.add_parser(
        "get",
        help="show one approval",
        description="show one order's approval (approvals app): tier, stage, due time and the "
        "decision log; --wait waits for an approval just requested to appear",
    )
    aget.set_defaults(fn=cmd_approval_get)
    aget.add_argument("order_id")
    aget.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="at most 60")
    dec = add("decide", cmd_decide, "approve or reject an order's approval as the token's approver")
    dec.add_argument("order_id")
    verdict = dec.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--approve", action="store_true", default=None)
    verdict.add_argument("--reject", dest="approve", action="store_false")
    dec.add_argument("--reason", default="")
    audit = sub.add_parser("audit", help="audit log: list, verify").add_subparsers(
        dest="verb", required=True
    )
    al = audit.add_parser(
        "list", help="show audit records", description="show audit records", parents=[common]
    )
    al.set_defaults(fn=cmd_audit_list)
    for name in ("actor", "action", "target"):
        al.add_argument(f"--{name}")
    al.add_argument("--outcome", help="prefix: ok, refused, failed")
    al.add_argument("--limit", type=int, default=50, help="at most 1000")
    page = al.add_mutually_exclusive_group()
    page.add_argument("--before", type=int, metavar="SEQ", help="records older than SEQ")
    page.add_argument("--after", type=int, metavar="SEQ", help="records newer than SEQ")
    av = audit.add_parser(
        "verify",
        parents=[common],
        help="check the audit log's keyed chain and checkpoints",
        description="ask the app to check its audit log: since the last checkpoint, or every "
        "record with --full; with --anchor FILE, also against the end seen last time (kept "
        "in FILE, per app URL), which catches a log cut back together with its checkpoints",
    )
    av.set_defaults(fn=cmd_audit_verify)
    av.add_argument("--full", action="store_true", help="check every record")
    av.add_argument("--anchor", metavar="FILE", help="keep and check an anchor in FILE")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the approvals-ctl command."""
    args = parser().parse_args(argv)
    if args.token is None:
        args.token = os.environ.get("APPROVALS_TOKEN")
    else:
        print(TOKEN_WARNING, file=sys.stderr)
    try:
        return int(args.fn(Client(args), args))
    except CtlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
