"""devstack runtime: a cache of an earlier devstack, without sentry, is topped up in place."""

import json
import os
from pathlib import Path

import pytest

from devstack import runtime


@pytest.fixture
def cache_without_sentry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A complete cache of an earlier devstack: daprd, placement, scheduler, no sentry."""
    monkeypatch.setenv("ORDER_APPROVALS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    bin_dir = runtime.runtime_dir("9.9.9") / ".dapr" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("daprd", "placement", "scheduler"):
        (bin_dir / name).write_text(name)
    (bin_dir / runtime.MARKER).write_text('{"version": "9.9.9"}')
    return bin_dir


def test_a_cache_without_sentry_is_topped_up_not_rebuilt(
    cache_without_sentry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runtime._cached("9.9.9") is None
    assert runtime._missing_from_cache("9.9.9") == ["sentry"]
    built: list[list[str]] = []

    def source(version: str, scratch: Path) -> Path:
        return scratch

    def compile_(src: Path, names: list[str], bin_dir: Path, version: str) -> None:
        built.append(names)
        for name in names:
            (bin_dir / name).write_text(f"new {name}")

    monkeypatch.setattr(runtime, "_require_go", lambda: None)
    monkeypatch.setattr(runtime, "_build", lambda version: pytest.fail("rebuilt everything"))
    monkeypatch.setattr(runtime, "_source", source)
    monkeypatch.setattr(runtime, "_compile", compile_)
    daprd = os.stat(cache_without_sentry / "daprd").st_ino
    found = runtime.ensure_runtime("9.9.9")
    assert built == [["sentry"]]
    assert found.bin_dir == cache_without_sentry
    assert (cache_without_sentry / "sentry").read_text() == "new sentry"
    assert os.stat(cache_without_sentry / "daprd").st_ino == daprd  # left alone, in place
    marker = json.loads((cache_without_sentry / runtime.MARKER).read_text())
    assert marker["binaries"] == list(runtime.BINARIES)
    assert runtime._cached("9.9.9") is not None
    assert not list(cache_without_sentry.parents[2].glob("building-dapr-*"))  # scratch gone


def test_a_failed_top_up_leaves_the_cache_incomplete(
    cache_without_sentry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def compile_(src: Path, names: list[str], bin_dir: Path, version: str) -> None:
        raise runtime.RuntimeUnavailable("go build sentry failed")

    monkeypatch.setattr(runtime, "_require_go", lambda: None)
    monkeypatch.setattr(runtime, "_source", lambda version, scratch: scratch)
    monkeypatch.setattr(runtime, "_compile", compile_)
    with pytest.raises(runtime.RuntimeUnavailable, match="go build sentry failed"):
        runtime.ensure_runtime("9.9.9")
    assert runtime._cached("9.9.9") is None
    assert runtime._missing_from_cache("9.9.9") == ["sentry"]
