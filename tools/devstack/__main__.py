"""devstack: obtain the Dapr runtime and run the apps of dapr.yaml on loopback.

devstack runtime        build or find daprd/placement/scheduler at the pinned version
devstack mail           build or find Mailpit, the local mail server `run` starts
devstack kube-parts     build or find the Kubernetes tier's parts (kube-apiserver, etcd, ...)
devstack jaeger         build or find Jaeger v2, the local trace backend
devstack run            start redis, sentry, placement, scheduler and every app with its sidecar
                        (--replicas: more than one of each), and keep them running (a process
                        that exits is restarted)
devstack ps             list the processes of a running stack: pid, state, restarts, ready
devstack kill NAME      send a process a signal (KILL by default; STOP hangs it, CONT wakes it)
devstack restart NAME   stop a process and start it again now

`devstack COMMAND --help` says more about each.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from devstack.apps import parse_replicas
from devstack.control import (
    ControlServer,
    claim,
    format_ps,
    request,
    restarts_of,
    wait_until_back,
)
from devstack.errors import DevstackError
from devstack.jaeger import PINNED_VERSION as JAEGER_VERSION
from devstack.jaeger import main_jaeger
from devstack.kube import ETCD_VERSION, KUBERNETES_VERSION, main_kube_parts
from devstack.log import say
from devstack.mail import MAILPIT_VERSION, main_mail, with_mail
from devstack.runfile import RunFile
from devstack.runtime import PINNED_VERSION, main_runtime
from devstack.stack import DEFAULT_REDIS_PORT, Stack
from devstack.supervisor import SIGNALS


def _run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_dir = Path(args.run_dir).resolve()
    try:
        apps = [a.app_id for a in RunFile.load(Path(args.file)).apps]
        stack = Stack(
            run_file=Path(args.file),
            run_dir=run_dir,
            free_ports=args.free_ports,
            redis_port=args.redis_port,
            replicas=parse_replicas(args.replicas, apps),
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        sock = claim(run_dir)
        mailbox = with_mail(stack)
        stack.start()
    except DevstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n  app         app URL                  sidecar HTTP             sidecar gRPC")
    for app in (a for replicas in stack.app_replicas.values() for a in replicas):
        print(f"  {app.name:<11} {app.app_url:<24} {app.dapr_url:<24} 127.0.0.1:{app.grpc_port}")
    if "orders" in stack.apps:
        docs = f"{stack.apps['orders'].app_url}/docs"
        print(f"\n  Open {docs} for the orders API. Ctrl-C stops everything.")
    if mailbox is not None:
        print(f"  E-mail to approvers and customers: the inbox at {mailbox.url}")
    if stack.tracing is not None:
        where = stack.tracing.ui_url or f"the OTLP endpoint {stack.tracing.endpoint}"
        print(f"  Traces: {where} (one trace per order; DEVSTACK_TRACING=off runs without)")
    there = "" if args.run_dir == ".run" else f" --run-dir {args.run_dir}"
    victim = stack.replica_names("orders")[0] if "orders" in stack.apps else "redis"
    print(
        "  A process that exits is restarted. Watch it: `uv run devstack ps"
        f"{there}`, `uv run devstack kill {victim}{there}`.\n",
        flush=True,
    )
    try:
        with ControlServer(sock, stack.supervisor):
            stack.supervisor.run(stop)
    except DevstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        say("stopping")
        stack.stop()
    return 0


def _ps(args: argparse.Namespace) -> int:
    rows = request(Path(args.run_dir), {"command": "ps"})["processes"]
    print(json.dumps(rows, indent=2) if args.json else format_ps(rows))
    return 0


def _kill(args: argparse.Namespace) -> int:
    if args.wait and args.signal in ("STOP", "CONT"):
        raise DevstackError(f"--wait waits for a restart; SIG{args.signal} ends nothing")
    run_dir = Path(args.run_dir)
    before = restarts_of(run_dir, args.name) if args.wait else 0
    reply = request(run_dir, {"command": "kill", "name": args.name, "signal": args.signal})
    print(f"sent SIG{args.signal} to {args.name} (pid {reply['pid']})", flush=True)
    if args.wait:
        print(wait_until_back(run_dir, args.name, before))
    return 0


def _restart(args: argparse.Namespace) -> int:
    reply = request(Path(args.run_dir), {"command": "restart", "name": args.name})
    ready = reply["ready"]
    when = f"ready {ready}s later" if ready is not None else "not ready within 90s: see its log"
    print(f"{args.name} restarted as pid {reply['pid']}; {when}")
    return 0 if ready is not None else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devstack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rt = sub.add_parser(
        "runtime",
        help="find or build the Dapr runtime; print its bin dir",
        description="Find daprd, placement, scheduler and sentry at the pinned version "
        "(installed, or cached), else build them from the Go modules.",
    )
    rt.add_argument(
        "--version",
        default=None,
        help=f"Dapr runtime version (default {PINNED_VERSION}, or $DAPR_RUNTIME_VERSION)",
    )
    sub.add_parser(
        "mail",
        help="find or build Mailpit, the local mail server; print its path",
        description=f"Find Mailpit {MAILPIT_VERSION} in the cache, else build it from the Go "
        "module github.com/axllent/mailpit (its web inbox bundled with npm, when there is "
        "npm). `devstack run` does this itself; this is for building ahead (CI).",
    )
    sub.add_parser(
        "kube-parts",
        help="find or build the Kubernetes tier's parts; print where they are",
        description=f"Find or build (from Go modules, minutes the first time, then cached) "
        f"kube-apiserver, kube-controller-manager and kubectl {KUBERNETES_VERSION}, etcd "
        f"{ETCD_VERSION}, and Dapr's sentry, injector and operator at the runtime's version "
        "(with Dapr's CRDs); print each one's path.",
    )
    jg = sub.add_parser(
        "jaeger",
        help="find or build Jaeger v2; print its path",
        description="Find Jaeger v2 in the cache, else build ./cmd/jaeger from the Go module "
        "github.com/jaegertracing/jaeger (minutes, once; cached by version).",
    )
    jg.add_argument("--version", default=None, help=f"module version (default {JAEGER_VERSION})")
    run = sub.add_parser(
        "run",
        help="run the apps of dapr.yaml under real sidecars, restarting what exits",
        description="Start redis-server, sentry, placement, scheduler and each app of the run "
        "file with its daprd, all on 127.0.0.1 and talking mTLS, and keep them running: a "
        "process that exits is started again after 1s, 2s, 4s ... up to 30s (back to 1s once "
        "it stayed up a "
        "minute); one that crashes 5 times in a row stops the stack. Ctrl-C stops everything. "
        "`devstack ps`, `kill` and `restart` talk to it through <run dir>/devstack.sock.",
    )
    run.add_argument("-f", "--file", default="dapr.yaml", help="multi-app run file")
    run.add_argument(
        "--free-ports",
        action="store_true",
        help="ignore the ports in the run file and pick free ones",
    )
    run.add_argument("--redis-port", type=int, default=DEFAULT_REDIS_PORT, help="redis port")
    run.add_argument(
        "--replicas",
        default="",
        metavar="APP=N,...",
        help="run N replicas of an app (`orders=2,approvals=2`; a bare `2`: of every app), each "
        "its own app process and sidecar, named orders-1, orders-1-daprd, orders-2, ...; the "
        "first on dapr.yaml's ports, the others on free ones",
    )

    ps = sub.add_parser(
        "ps",
        help="list the processes of a running stack",
        description="For each process of the stack running in the run dir: its pid, state "
        "(running; stopped, i.e. hung by SIGSTOP; waiting to restart), how often it was "
        "restarted, whether it is ready (answers its health check), how long it has been "
        "up, and how it last exited.",
    )
    ps.add_argument("--json", action="store_true", help="print JSON instead of a table")
    kill = sub.add_parser(
        "kill",
        help="send a signal to one process of a running stack",
        description="Send a signal to one process (its process group) to watch the stack "
        "recover: KILL (default) and TERM end it, and the stack restarts it after its "
        "backoff; STOP hangs it (it stays hung, shown as stopped, until you send CONT).",
    )
    kill.add_argument(
        "name", help="process name, as `devstack ps` lists it (e.g. orders-daprd, orders-2)"
    )
    kill.add_argument(
        "-s",
        "--signal",
        default="KILL",
        type=str.upper,
        choices=SIGNALS,
        help="signal to send (default KILL)",
    )
    kill.add_argument(
        "--wait",
        action="store_true",
        help="wait until the stack has started it again and it is ready; say how long it took",
    )
    restart = sub.add_parser(
        "restart",
        help="stop one process of a running stack and start it again now",
        description="Stop one process (SIGTERM, then SIGKILL after 10s) and start it again at "
        "once, without backoff; wait until it is ready again and say how long that took.",
    )
    restart.add_argument("name", help="process name, as `devstack ps` lists it")
    for command in (run, ps, kill, restart):
        command.add_argument(
            "--run-dir", default=".run", help="the stack's run dir: logs, data, control socket"
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `devstack` command."""
    args = _parser().parse_args(argv)
    if args.command == "runtime":
        return main_runtime(args.version)
    if args.command == "mail":
        return main_mail()
    if args.command == "kube-parts":
        return main_kube_parts()
    if args.command == "jaeger":
        return main_jaeger(args.version)
    if args.command == "run":
        return _run(args)
    commands = {"ps": _ps, "kill": _kill, "restart": _restart}
    try:
        return commands[args.command](args)
    except DevstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
