"""The real stack, once per test run: redis-server, placement, scheduler, three apps, three
daprd sidecars, on free loopback ports. Scenarios use unique ids, so they share it safely."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from devstack.mail import with_mail
from devstack.stack import Stack
from tests.fakes import bearer
from workflow_harness import record_histories

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")

# The shared stack's deadlines are far beyond any test, so a slow, loaded machine never turns a
# decision into an escalation: the tests that need a deadline to pass run on a stack of their
# own (DEADLINE_ENV, tests/e2e/test_deadlines.py). The policy is otherwise the production
# default. Each stack makes its own sidecar and app tokens (Stack.apps[...].dapr_api_token).
E2E_ENV = {
    "POLICY_MANAGER_DEADLINE": "30m",
    "POLICY_VP_DEADLINE": "30m",
    "POLICY_ORDER_BACKSTOP": "90m",
    "DECISION_HOLD": "20s",
}
# Deadlines that pass during a test: the manager's soon; the VP's late enough that a decision
# posted when the VP stage opens lands well before it on a loaded 2-core machine (measured in
# docs/testing.md), yet an expiry test waits only for both.
# The VP's reminder 5 s into the stage; the manager's stage is too short for one.
DEADLINE_ENV = {
    **E2E_ENV,
    "POLICY_MANAGER_DEADLINE": "4s",
    "POLICY_VP_DEADLINE": "20s",
    "POLICY_REMINDER_BEFORE": "15s",
}


class WebhookSink:
    """A tiny HTTP server on loopback that keeps every JSON POST it receives, by path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                sink.received.append((self.path, json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def for_order(self, order_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(p, n) for p, n in list(self.received) if n.get("order_id") == order_id]


@pytest.fixture(scope="session")
def webhook() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    sink.thread.start()
    yield sink
    sink.server.shutdown()
    sink.server.server_close()


def e2e_stack(
    run_dir: Path,
    env: dict[str, str],
    webhook: WebhookSink,
    replicas: int = 1,
    mail: bool = True,
) -> Iterator[Stack]:
    """A whole stack on free loopback ports, `replicas` of each app, with its mail server
    unless `mail` is False; RECORD_HISTORIES=<dir> keeps its histories."""
    stack = Stack(
        run_file=ROOT / "dapr.yaml",
        run_dir=run_dir,
        free_ports=True,
        env={**env, "NOTIFY_CHANNELS": "log,webhook"},
        component_metadata={"notify-webhook": {"url": webhook.url}},
        replicas=dict.fromkeys(("orders", "approvals", "notifier"), replicas),
    )
    if mail and with_mail(stack) is None:
        raise RuntimeError("no mail server for the end-to-end stack: see the lines above")
    with stack as running:
        yield running
        if record := os.environ.get("RECORD_HISTORIES"):
            save_histories(running, Path(record))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, webhook: WebhookSink) -> Iterator[Stack]:
    run_dir = Path(os.environ.get("E2E_RUN_DIR") or tmp_path_factory.mktemp("stack"))
    yield from e2e_stack(run_dir, E2E_ENV, webhook)


def save_histories(stack: Stack, directory: Path) -> None:
    """RECORD_HISTORIES=<dir>: keep the histories of the run's finished workflows, as replay
    fixtures (curated into tests/histories; see docs/testing.md)."""
    for app in ("orders", "approvals"):
        record_histories(
            directory,
            address=f"127.0.0.1:{stack.apps[app].grpc_port}",
            api_token=stack.apps[app].dapr_api_token,
            workflows=("order_workflow", "approval_workflow"),
        )


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    """A client that reads as the development admin unless a request says otherwise."""
    with httpx.Client(timeout=10, headers=bearer("admin")) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def eventually(probe: Callable[[], T | None], timeout: float = 30, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last saw {last!r}")


@pytest.fixture
def flow(stack: Stack, http: httpx.Client) -> Any:
    from tests.e2e.flow import Flow

    return Flow(stack, http)
