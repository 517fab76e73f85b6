"""The package map in docs/architecture.md, kept true: imports run one way, downward."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Lower layers never import higher ones; services import anything below them.
LAYERS = {"contracts": 0, "plumbing": 1, "control": 2}
SERVICES = {"orders", "approvals", "notifier"}
OURS = set(LAYERS) | SERVICES | {"devstack", "approvals_ctl", "workflow_harness"}


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_shared_packages_import_only_downward(package: str) -> None:
    rank = LAYERS[package]
    for path in sorted((ROOT / "services" / package).glob("*.py")):
        ours = imported_packages(path) & OURS
        upward = {p for p in ours if p in SERVICES or LAYERS.get(p, -1) > rank}
        outside = ours - set(LAYERS)
        assert not upward, f"{path.relative_to(ROOT)} imports {sorted(upward)} (above it)"
        assert not outside, f"{path.relative_to(ROOT)} imports {sorted(outside)}"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_services_do_not_import_each_other(service: str) -> None:
    for path in sorted((ROOT / "services" / service).glob("*.py")):
        others = imported_packages(path) & (SERVICES - {service})
        assert not others, f"{path.relative_to(ROOT)} imports {sorted(others)}: use a topic"


def test_workflow_harness_needs_nothing_of_ours() -> None:
    for path in sorted((ROOT / "libs" / "workflow_harness").glob("*.py")):
        ours = imported_packages(path) & (OURS - {"workflow_harness"})
        assert not ours, f"{path.relative_to(ROOT)} imports {sorted(ours)}"


def test_no_module_is_too_long_to_read() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for folder in ("services", "libs", "tools")
        for p in (ROOT / folder).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 420
    }
    assert not long, f"split these modules: {long}"
