"""Obtain the Dapr runtime binaries (daprd, placement, scheduler, sentry) at the pinned version.

Order of preference:
1. binaries already installed (PATH or ~/.dapr/bin) whose `--version` matches the pin;
2. a previous build in the cache (~/.cache/order-approvals/dapr/<version>/.dapr/bin);
3. a build from the Go module github.com/dapr/dapr at the pinned version.

A build goes to a scratch directory and is renamed into the cache only when every binary
is there, so a half-finished build never counts as cached. A cache from before a binary was
added (sentry came with replicas) is topped up: only the missing binary is built, in scratch,
and moved in beside the others, which stay in use meanwhile. One build runs at a time per cache
(a lock file): a second devstack waits for it, then finds the cache complete.

Errors: RuntimeUnavailable (subclass of DevstackError) with a one-line, actionable message.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import DevstackError
from devstack.log import say

# The newest runtime the Go module proxy serves with every dependency (see docs/operations.md):
# 1.19.x is not served, and v1.18.3 needs durabletask-go v0.12.4, which the proxy refuses.
PINNED_VERSION = "1.18.2"
# Tried in order when the pinned module (or one of its dependencies) is not served: the next
# patch release first, as the issue tracker's policy says.
FALLBACK_VERSIONS = ("1.18.3",)
BUILD_TAGS = os.environ.get("DAPR_BUILD_TAGS", "allcomponents")
BINARIES = ("daprd", "placement", "scheduler", "sentry")
MARKER = ".complete.json"
LOCK = ".build.lock"


class RuntimeUnavailable(DevstackError):
    """The runtime could not be found or built."""


@dataclass(frozen=True)
class Runtime:
    version: str
    bin_dir: Path
    source: str  # "installed", "cache" or "built"

    def binary(self, name: str) -> Path:
        return self.bin_dir / name


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("ORDER_APPROVALS_CACHE", Path(base) / "order-approvals"))


def runtime_dir(version: str) -> Path:
    """Laid out like `dapr init --slim`: <dir>/.dapr/bin, usable as DAPR_RUNTIME_PATH."""
    return cache_root() / "dapr" / version


def _binary_version(path: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[-1].strip().lstrip("v") if text else None


def _installed(version: str) -> Runtime | None:
    candidates = []
    on_path = shutil.which("daprd")
    if on_path:
        candidates.append(Path(on_path).parent)
    candidates.append(Path.home() / ".dapr" / "bin")
    for bin_dir in candidates:
        if all((bin_dir / b).is_file() for b in BINARIES):
            found = _binary_version(bin_dir / "daprd")
            if found == version:
                return Runtime(version, bin_dir, "installed")
            if found:
                say(f"runtime: ignoring {bin_dir}/daprd: version {found}, pinned {version}")
    return None


def _cached(version: str) -> Runtime | None:
    bin_dir = runtime_dir(version) / ".dapr" / "bin"
    if (bin_dir / MARKER).is_file() and all((bin_dir / b).is_file() for b in BINARIES):
        return Runtime(version, bin_dir, "cache")
    return None


def _missing_from_cache(version: str) -> list[str]:
    """The binaries a complete cache of an earlier devstack lacks (it had fewer), else []."""
    bin_dir = runtime_dir(version) / ".dapr" / "bin"
    if not (bin_dir / MARKER).is_file() or not (bin_dir / "daprd").is_file():
        return []
    return [b for b in BINARIES if not (bin_dir / b).is_file()]


class BuildLock:
    """An exclusive lock on the cache while a build runs (one Go build at a time)."""

    def __enter__(self) -> BuildLock:
        cache_root().mkdir(parents=True, exist_ok=True)
        self._file = (cache_root() / LOCK).open("a")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"runtime: another build runs in {cache_root()}; waiting for it")
            fcntl.flock(self._file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def ensure_runtime(version: str | None = None) -> Runtime:
    """Return a usable runtime, building it (minutes, once) when nothing matches."""
    pinned = version or os.environ.get("DAPR_RUNTIME_VERSION", PINNED_VERSION)
    versions = [pinned] if version else [pinned, *FALLBACK_VERSIONS]
    for v in versions:
        found = _installed(v) or _cached(v)
        if found:
            return found
    _require_go()
    errors: list[str] = []
    with BuildLock():
        for i, v in enumerate(versions):
            found = _cached(v)  # another devstack may have built it while we waited
            if found:
                return found
            try:
                if missing := _missing_from_cache(v):
                    return _top_up(v, missing)
                return _build(v)
            except ModuleNotServed as exc:
                errors.append(str(exc))
                if i + 1 < len(versions):
                    say(f"runtime: {exc}; trying {versions[i + 1]}")
    raise RuntimeUnavailable(
        "no Dapr runtime could be built here: "
        + "; ".join(errors)
        + ". Install daprd, placement, scheduler and sentry of the pinned version in ~/.dapr/bin, "
        "or set DAPR_RUNTIME_VERSION to a version your Go module proxy serves"
    )


class ModuleNotServed(DevstackError):
    """The module proxy refused a module version (403/404/410)."""


def _require_go() -> None:
    if not shutil.which("go"):
        raise RuntimeUnavailable(
            "Go is not installed and no daprd matching the pin was found: install Go "
            "(https://go.dev/doc/install, or `apt-get install golang`) or put daprd, "
            f"placement, scheduler and sentry {PINNED_VERSION} in ~/.dapr/bin"
        )


def _go_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"CGO_ENABLED": "0", "GOTOOLCHAIN": env.get("GOTOOLCHAIN", "auto")})
    env.update(extra)
    return env


def _run_go(args: list[str], cwd: Path, env: dict[str, str], label: str) -> None:
    """Run a go command, printing a progress line every 15 s, failing with its last lines."""
    started = time.monotonic()
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    counts = {"downloaded": 0, "compiled": 0}
    tail: list[str] = []
    stop = threading.Event()

    def report() -> None:
        while not stop.wait(15):
            elapsed = int(time.monotonic() - started)
            say(
                f"  {label}: {counts['downloaded']} modules downloaded, "
                f"{counts['compiled']} packages compiled ({elapsed // 60}m{elapsed % 60:02d}s)"
            )

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    for line in proc.stdout:
        line = line.rstrip()
        if line.startswith("go: downloading"):
            counts["downloaded"] += 1
        elif line and not line.startswith(("go:", "#", " ")) and "/" in line:
            counts["compiled"] += 1
        else:
            tail = [*tail[-30:], line]
    rc = proc.wait()
    stop.set()
    if rc != 0:
        text = "\n".join(tail)
        if "403 Forbidden" in text or "404 Not Found" in text or "410 Gone" in text:
            missing = [ln for ln in tail if "not available" in ln or "reading https" in ln]
            raise ModuleNotServed(
                f"the Go module proxy does not serve a module needed by {label}: "
                + (missing[0].strip() if missing else text.splitlines()[-1])
            )
        raise RuntimeUnavailable(f"{label} failed (`{' '.join(args)}`):\n{text}")
    say(f"  {label}: done in {int(time.monotonic() - started)}s")


def module_copy(module: str, version: str, dest: Path, env: dict[str, str]) -> Path:
    """Download a Go module and copy it to `dest`, writable: a module with replace directives
    refuses `go install pkg@version`, so it is built from such a copy."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@v{version}"],
        cwd=dest.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    info = json.loads(out.stdout or "{}") if out.stdout.strip().startswith("{") else {}
    if out.returncode != 0 or not info.get("Dir"):
        reason = " ".join(str(info.get("Error") or out.stderr or "unknown error").split())
        if "not available" in reason or "403" in reason or "404" in reason:
            raise ModuleNotServed(f"{module}@v{version} is not served: {reason}")
        raise RuntimeUnavailable(f"`go mod download {module}@v{version}` failed: {reason}")
    shutil.copytree(info["Dir"], dest)
    for path in [dest, *dest.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)
    return dest


def _source(version: str, scratch: Path) -> Path:
    """A writable copy of the dapr module at `version` in `scratch` (downloaded if needed)."""
    # The checksum database may be unreachable: skip it for the top-level module only;
    # its go.sum then verifies every dependency during the build.
    env = _go_env(GONOSUMDB="github.com/dapr/dapr")
    return module_copy("github.com/dapr/dapr", version, scratch / "src", env)


def _compile(src: Path, names: list[str], bin_dir: Path, version: str) -> None:
    ldflags = f"-s -w -X github.com/dapr/dapr/pkg/buildinfo.version={version}"
    for name in names:
        say(f"runtime: compiling {name} {version}")
        _run_go(
            [
                "go",
                "build",
                "-v",
                "-trimpath",
                "-tags",
                BUILD_TAGS,
                "-ldflags",
                ldflags,
                "-o",
                str(bin_dir / name),
                f"./cmd/{name}",
            ],
            cwd=src,
            env=_go_env(),
            label=f"go build {name}",
        )
        # Only daprd answers --version (the control plane binaries log it when they start).
        if name == "daprd" and (got := _binary_version(bin_dir / name)) != version:
            raise RuntimeUnavailable(f"built daprd reports version {got!r}, expected {version}")


def _scratch(version: str) -> Path:
    cache_root().mkdir(parents=True, exist_ok=True)
    for stale in cache_root().glob("building-dapr-*"):  # left by an interrupted build
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"building-dapr-{version}-", dir=cache_root()))


def _write_marker(bin_dir: Path, version: str) -> None:
    marker = {"version": version, "tags": BUILD_TAGS, "go": _go_version(), "binaries": BINARIES}
    (bin_dir / f"{MARKER}.new").write_text(json.dumps(marker) + "\n")
    os.replace(bin_dir / f"{MARKER}.new", bin_dir / MARKER)  # never a half-written marker


def _build(version: str) -> Runtime:
    final = runtime_dir(version)
    say(
        f"runtime: building Dapr {version} from Go modules (tags: {BUILD_TAGS}); "
        "this takes several minutes the first time and is cached in "
        f"{final}"
    )
    scratch = _scratch(version)
    try:
        src = _source(version, scratch)
        bin_dir = scratch / "out" / ".dapr" / "bin"
        bin_dir.mkdir(parents=True)
        _compile(src, list(BINARIES), bin_dir, version)
        (scratch / "out" / ".dapr" / "components").mkdir()
        _write_marker(bin_dir, version)
        if final.exists():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        (scratch / "out").rename(final)
        say(f"runtime: Dapr {version} ready in {final / '.dapr' / 'bin'}")
        return Runtime(version, final / ".dapr" / "bin", "built")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _top_up(version: str, missing: list[str]) -> Runtime:
    """Build only what a cached runtime lacks, beside it; the binaries there stay in use."""
    bin_dir = runtime_dir(version) / ".dapr" / "bin"
    say(
        f"runtime: the cached Dapr {version} in {bin_dir} has no {', '.join(missing)}; "
        "building only that (a minute or two with warm Go caches)"
    )
    scratch = _scratch(version)
    try:
        src = _source(version, scratch)
        out = scratch / "out"
        out.mkdir()
        _compile(src, missing, out, version)
        for name in missing:
            os.replace(out / name, bin_dir / name)  # same file system: atomic
        _write_marker(bin_dir, version)
        say(f"runtime: Dapr {version} complete in {bin_dir}")
        return Runtime(version, bin_dir, "built")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _go_version() -> str:
    out = subprocess.run(["go", "version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def main_runtime(version: str | None) -> int:
    """`devstack runtime`: make sure the runtime is there and say where."""
    try:
        rt = ensure_runtime(version)
    except DevstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    say(f"runtime: Dapr {rt.version} ({rt.source}) in {rt.bin_dir}")
    print(rt.bin_dir)
    return 0
