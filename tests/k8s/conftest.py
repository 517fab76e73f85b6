"""The Kubernetes tier's fixtures: one control plane per run (tests/k8s/cluster.py), and each
overlay of deploy/ applied to it in turn, in a namespace removed again afterwards.

K8S_TIER=off deselects the whole tier, saying so at the start and the end of the run. When the
control plane cannot start, the first test that needs it errors with the reason and every later
one is skipped pointing at that error, rather than repeating it for each test."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from devstack.errors import DevstackError
from devstack.kube import ensure_kube_parts, namespaces_usable
from tests.k8s.cluster import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "order-approvals"
T = TypeVar("T")
OVERLAYS = ("dev", "production")
HERE = Path(__file__).resolve().parent
OFF = os.environ.get("K8S_TIER", "").lower() == "off"
DESELECTED = pytest.StashKey[int]()
# Set once the control plane has failed to start (the first test that needed it says why).
START_FAILED: list[bool] = []


def _banner(deselected: int) -> str:
    return f"*** K8S_TIER=off: the Kubernetes tier (tests/k8s, {deselected} tests) is NOT run ***"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not OFF:
        return
    tier = [i for i in items if HERE in i.path.parents]
    if not tier:
        return
    items[:] = [i for i in items if i not in tier]
    config.hook.pytest_deselected(items=tier)
    config.stash[DESELECTED] = len(tier)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(_banner(len(tier)), yellow=True, bold=True)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if deselected := config.stash.get(DESELECTED, 0):
        terminalreporter.section("Kubernetes tier", yellow=True, bold=True)
        terminalreporter.write_line(_banner(deselected), yellow=True, bold=True)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if START_FAILED and HERE in item.path.parents:
        pytest.skip("k8s tier: its control plane did not start; the first tests/k8s error says why")


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
    why = ""
    try:
        namespaces_usable()  # cheap, and what no build can fix
        parts = ensure_kube_parts()  # built once (`make test` builds it first, with progress)
    except DevstackError as exc:
        START_FAILED.append(True)
        why = str(exc)
    if why:
        pytest.fail(why, pytrace=False)  # one line, no traceback: the message says what to do
    chosen = os.environ.get("K8S_RUN_DIR")
    run_dir = Path(chosen) if chosen else tmp_path_factory.mktemp("k8s")
    print(f"\nk8s tier: control plane logs in {run_dir / 'logs'}")
    plane = ControlPlane(parts, run_dir)
    try:
        try:
            plane.start()
        except BaseException:
            START_FAILED.append(True)
            raise
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
