"""The Kubernetes tier's fixtures: one control plane per run (tests/k8s/cluster.py), and each
overlay of deploy/ applied to it in turn, in a namespace removed again afterwards."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from devstack.kube import ensure_kube_parts
from tests.k8s.cluster import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "order-approvals"
T = TypeVar("T")
OVERLAYS = ("dev", "production")


@dataclass(frozen=True)
class Deployed:
    overlay: str
    path: Path
    plane: ControlPlane


def eventually(check: Callable[[], T], what: str, timeout: float = 90) -> T:
    """Poll `check` until it returns something truthy; fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    parts = ensure_kube_parts()  # built once (`make test` builds it first, with progress)
    chosen = os.environ.get("K8S_RUN_DIR")
    run_dir = Path(chosen) if chosen else tmp_path_factory.mktemp("k8s")
    print(f"\nk8s tier: control plane logs in {run_dir / 'logs'}")
    plane = ControlPlane(parts, run_dir)
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="module", params=OVERLAYS)
def deployed(request: pytest.FixtureRequest, control_plane: ControlPlane) -> Iterator[Deployed]:
    """The overlay applied as docs/operations.md says: namespace, secrets, `apply -k`."""
    overlay = ROOT / "deploy" / "overlays" / request.param
    plane = control_plane
    plane.kubectl("create", "namespace", NAMESPACE)
    plane.kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "deploy" / "secrets.example.yaml"))
    plane.kubectl("apply", "--server-side", "-k", str(overlay))
    try:
        yield Deployed(request.param, overlay, plane)
    finally:
        plane.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s")
