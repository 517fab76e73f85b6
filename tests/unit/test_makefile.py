"""The Makefile's targets and Mailpit: the tiers that need it stop at once when it cannot be
built, `make run` goes on without e-mail, and the fast tiers never ask for it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Stands in for uv: logs each call; `devstack mail` fails as a build without Go would.
FAKE_UV = """#!/bin/sh
echo "$*" >> "{log}"
case "$*" in *"devstack mail"*) echo "error: cannot build Mailpit: no go in PATH" >&2; exit 1;; esac
exit 0
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make(target: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = tmp_path / "calls"
    uv = tmp_path / "uv"
    uv.write_text(FAKE_UV.format(log=log))
    uv.chmod(0o755)
    done = subprocess.run(
        ["make", "--no-print-directory", f"UV={uv}", "K8S_TIER=off", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("target", ["test", "test-e2e", "test-postgres", "test-browser"])
def test_a_tier_that_needs_mailpit_stops_at_once_with_the_build_s_reason(
    target: str, tmp_path: Path
) -> None:
    done, calls = make(target, tmp_path)
    assert done.returncode != 0
    assert "cannot build Mailpit: no go in PATH" in done.stderr
    assert not [c for c in calls if "pytest" in c]


def test_run_goes_on_without_mail_and_says_so(tmp_path: Path) -> None:
    done, calls = make("run", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "running WITHOUT e-mail" in done.stderr
    assert any("devstack run" in c for c in calls)


@pytest.mark.parametrize("target", ["lint", "test-unit", "test-service"])
def test_the_fast_tiers_never_ask_for_mailpit(target: str, tmp_path: Path) -> None:
    done, calls = make(target, tmp_path)
    assert done.returncode == 0, done.stderr
    assert not [c for c in calls if "devstack mail" in c]
