"""devstack: obtain the Dapr runtime and run the apps of dapr.yaml on loopback.

devstack runtime        build or find daprd/placement/scheduler at the pinned version
devstack run            start redis, placement, scheduler and every app with its sidecar
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from devstack.errors import DevstackError
from devstack.log import say
from devstack.runtime import PINNED_VERSION, main_runtime
from devstack.stack import DEFAULT_REDIS_PORT, Stack


def _run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stack = Stack(
        run_file=Path(args.file),
        run_dir=Path(args.run_dir).resolve(),
        free_ports=args.free_ports,
        redis_port=args.redis_port,
    )
    try:
        stack.start()
    except DevstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n  app         app URL                  sidecar HTTP             sidecar gRPC")
    for app in stack.apps.values():
        print(f"  {app.app_id:<11} {app.app_url:<24} {app.dapr_url:<24} 127.0.0.1:{app.grpc_port}")
    if "orders" in stack.apps:
        docs = f"{stack.apps['orders'].app_url}/docs"
        print(f"\n  Open {docs} for the orders API. Ctrl-C stops everything.\n")
    try:
        while not stop.wait(1.0):
            stack.check_alive()
    except DevstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        say("stopping")
        stack.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `devstack` command."""
    parser = argparse.ArgumentParser(
        prog="devstack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rt = sub.add_parser(
        "runtime",
        help="find or build the Dapr runtime; print its bin dir",
        description="Find daprd, placement and scheduler at the pinned version "
        "(installed, or cached), else build them from the Go modules.",
    )
    rt.add_argument(
        "--version",
        default=None,
        help=f"Dapr runtime version (default {PINNED_VERSION}, or $DAPR_RUNTIME_VERSION)",
    )
    run = sub.add_parser(
        "run",
        help="run the apps of dapr.yaml under real sidecars",
        description="Start redis-server, placement, scheduler and each app of "
        "the run file with its daprd, all on 127.0.0.1; Ctrl-C stops them.",
    )
    run.add_argument("-f", "--file", default="dapr.yaml", help="multi-app run file")
    run.add_argument("--run-dir", default=".run", help="logs, redis data, rendered resources")
    run.add_argument(
        "--free-ports",
        action="store_true",
        help="ignore the ports in the run file and pick free ones",
    )
    run.add_argument("--redis-port", type=int, default=DEFAULT_REDIS_PORT, help="redis port")
    args = parser.parse_args(argv)
    if args.command == "runtime":
        return main_runtime(args.version)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
