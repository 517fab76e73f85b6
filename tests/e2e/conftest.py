"""The real stack, once per test run: redis-server, placement, scheduler, three apps, three
daprd sidecars, on free loopback ports. Scenarios use unique ids, so they share it safely."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from devstack.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# Deadlines shortened to seconds; the policy is otherwise the production default.
E2E_ENV = {
    "POLICY_MANAGER_DEADLINE": "8s",
    "POLICY_VP_DEADLINE": "8s",
    "POLICY_ORDER_BACKSTOP": "90s",
    "DECISION_HOLD": "6s",
}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_dir = Path(os.environ.get("E2E_RUN_DIR") or tmp_path_factory.mktemp("stack"))
    with Stack(run_file=ROOT / "dapr.yaml", run_dir=run_dir, free_ports=True,
               env=E2E_ENV) as running:
        yield running


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def eventually(probe: Callable[[], T | None], timeout: float = 30, what: str = "condition"
               ) -> T:
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
