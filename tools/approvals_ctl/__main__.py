"""approvals-ctl: steer the order and approval workflows through their management API.

Workflow commands (named like `dapr workflow`) act on the app chosen with --app:
  run, get, list (--stuck), history, diagnose, wait, raise-event, suspend, resume,
  terminate, purge, retention
Business commands:
  order place     publish an OrderPlaced (orders app)
  order get       one order: status, approval stage, amount, result (--wait, --until)
  cancel          cancel an order: its approval is closed, the customer told (orders app)
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

Cancel is how to stop an order. Terminate is for stuck workflows (they cannot take the
cancellation) and asks first (--yes answers for scripts).

Exit codes: 0 done; 1 the service failed or could not be reached; 2 usage error; 3 not found;
4 refused (401, 403, 409, 410, 422, or "no" at a prompt); 5 the audit log is not intact; 6 a
bulk job had failures.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from approvals_ctl.business_commands import (
    cmd_approval_get,
    cmd_audit_list,
    cmd_audit_verify,
    cmd_cancel,
    cmd_decide,
    cmd_keys_new,
    cmd_order_get,
    cmd_place,
    cmd_tokens_new,
)
from approvals_ctl.client import (
    TOKEN_WARNING,
    Client,
    CtlError,
)
from approvals_ctl.workflow_commands import (
    cmd_diagnose,
    cmd_get,
    cmd_history,
    cmd_list,
    cmd_purge,
    cmd_raise,
    cmd_retention,
    cmd_run,
    cmd_terminate,
    cmd_transition,
    cmd_wait,
)


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
    lst.add_argument(
        "--stuck",
        action="store_true",
        help="only live instances that are stuck, with why: past their deadline, a timer "
        "overdue, an event no wait took, an activity failing, or quiet too long (reads each "
        "live instance's history)",
    )
    lst.add_argument(
        "--stuck-after",
        metavar="DURATION",
        help='with --stuck: how long without progress counts (e.g. "30m"; the server\'s '
        "STUCK_AFTER by default)",
    )
    diag = add(
        "diagnose",
        cmd_diagnose,
        "why is it stuck? what an instance waits for (events, timers with due times), events "
        "that arrived and no wait took (and the name they resemble), activity failures and "
        "retries, dead letters of its order, whether the sidecar and workflow worker are "
        "connected, and when it last made progress",
    )
    diag.add_argument("instance_id")
    add(
        "retention",
        cmd_retention,
        "the scheduled purge of finished instances (--app): its age and schedule, whether the "
        "Dapr scheduler holds it as configured, the next run and what the last run did",
    )
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
    term.add_argument(
        "--only",
        action="append",
        metavar="ID",
        help="bulk: only these instances (repeat the option); each must still qualify",
    )
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
    purge.add_argument(
        "--only",
        action="append",
        metavar="ID",
        help="bulk: only these instances (repeat the option); each must still be finished",
    )

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
    kn.add_argument(
        "--for", dest="signer", choices=["orders", "approvals", "notifier"], required=True
    )
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
        parents=[common],
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
        help="with --wait: until the order is at this status or past it on the way to "
        "completion; exit 1 if it ended another way or the wait ran out",
    )
    approval = sub.add_parser("approval", help="approvals: get").add_subparsers(
        dest="verb", required=True
    )
    aget = approval.add_parser(
        "get",
        parents=[common],
        help="show one approval",
        description="show one order's approval (approvals app): tier, stage, due time and the "
        "decision log; --wait waits for an approval just requested to appear",
    )
    aget.set_defaults(fn=cmd_approval_get)
    aget.add_argument("order_id")
    aget.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="at most 60")
    can = add(
        "cancel",
        cmd_cancel,
        "cancel an order (orders app): its workflow closes the open approval, tells the "
        "customer and ends cancelled; a finished or approved order is refused (exit 4), and so "
        "is one whose workflow is stuck (terminate that instead)",
    )
    can.add_argument("order_id")
    can.add_argument("--reason", required=True, help="why (audited; shown in the approval's log)")
    can.add_argument(
        "--wait",
        type=float,
        default=30,
        metavar="SECONDS",
        help="wait this long (at most 60) for the order to end cancelled; exit 1 if it did not "
        "(0: do not wait)",
    )
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
