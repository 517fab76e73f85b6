"""The local mail server: Mailpit (github.com/axllent/mailpit), built from its Go module.

Mailpit takes mail on SMTP and shows it in a web inbox with a JSON API (`/api/v1/...`), both on
127.0.0.1. It is built once per version, like the Dapr runtime, into
~/.cache/order-approvals/mailpit/<version>/mailpit: the module is copied to scratch, its web
inbox (Vue) is bundled with npm when npm is there (without npm the API and SMTP work and the
inbox page is bare), then `go build`. One build runs at a time per cache (a lock file); a build
is renamed into the cache only when it is complete.

Errors: MailUnavailable (subclass of DevstackError): no Mailpit here and none can be built; the
stack then runs without the e-mail channel and says so.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from devstack.errors import DevstackError
from devstack.log import say
from devstack.procs import LOOPBACK, http_ok
from devstack.runtime import RuntimeUnavailable, _go_env, _run_go, cache_root

if TYPE_CHECKING:
    from devstack.stack import Stack

MAILPIT_VERSION = os.environ.get("MAILPIT_VERSION", "1.27.11")
MODULE = "github.com/axllent/mailpit"
SMTP_PORT, WEB_PORT = 1025, 8025  # Mailpit's own defaults
MARKER = ".complete.json"
# The sender of every notification, and the addresses the development stack writes to.
MAIL_FROM = "approvals@example.test"


class MailUnavailable(DevstackError):
    """No Mailpit binary, and none could be built here."""


@dataclass(frozen=True)
class Mailbox:
    """A running mail server: where to send (SMTP) and where to look (web inbox and API)."""

    smtp_port: int
    web_port: int

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.web_port}"

    def binding_metadata(self) -> dict[str, str]:
        """What the notify-email component is rendered with for this server."""
        return {"host": LOOPBACK, "port": str(self.smtp_port), "emailFrom": MAIL_FROM}


def mailpit_dir(version: str = MAILPIT_VERSION) -> Path:
    return cache_root() / "mailpit" / version


def cached_mailpit(version: str = MAILPIT_VERSION) -> Path | None:
    binary = mailpit_dir(version) / "mailpit"
    return binary if (mailpit_dir(version) / MARKER).is_file() and binary.is_file() else None


@contextmanager
def _build_lock(version: str) -> Iterator[None]:
    """One build at a time per cache: a second devstack waits, then finds the first's build."""
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / f"mailpit-{version}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"mail: another process is building Mailpit {version}; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_mailpit(version: str = MAILPIT_VERSION) -> Path:
    """The Mailpit binary at `version`: from the cache, else built (a few minutes, once)."""
    found = cached_mailpit(version)
    if found:
        return found
    if not shutil.which("go"):
        raise MailUnavailable("Go is not installed, so Mailpit cannot be built")
    with _build_lock(version):
        return cached_mailpit(version) or _build(version)


def _build(version: str) -> Path:
    final = mailpit_dir(version)
    started = time.monotonic()
    say(f"mail: building Mailpit {version} from {MODULE} (once; cached in {final})")
    scratch = Path(tempfile.mkdtemp(prefix=f"building-mailpit-{version}-", dir=cache_root()))
    try:
        src = _module_copy(version, scratch)
        ui = _bundle_inbox(src)
        out = scratch / "out"
        out.mkdir()
        ldflags = f"-s -w -X {MODULE}/config.Version=v{version}"
        try:
            _run_go(
                ["go", "build", "-v", "-trimpath", "-ldflags", ldflags, "-o", str(out), "."],
                cwd=src,
                env=_go_env(),
                label="go build mailpit",
            )
        except RuntimeUnavailable as exc:
            raise MailUnavailable(str(exc)) from None
        took = int(time.monotonic() - started)
        (out / MARKER).write_text(json.dumps({"version": version, "web_inbox": ui}) + "\n")
        if final.exists():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        out.rename(final)
        say(f"mail: Mailpit {version} built in {took}s: {final / 'mailpit'}")
        return final / "mailpit"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _module_copy(version: str, scratch: Path) -> Path:
    """A writable copy of the module's source (the module cache is read-only)."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@v{version}"],
        cwd=scratch,
        env=_go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    info = json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}
    if out.returncode != 0 or not info.get("Dir"):
        why = " ".join(str(info.get("Error") or out.stderr or "unknown error").split())
        raise MailUnavailable(f"`go mod download {MODULE}@v{version}` failed: {why}")
    src = scratch / "src"
    shutil.copytree(info["Dir"], src)
    for path in [src, *src.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)
    return src


def _bundle_inbox(src: Path) -> bool:
    """Bundle the web inbox's scripts into server/ui/dist (npm ci, then Mailpit's esbuild
    script), which the Go build embeds. The module ships the sources only."""
    if not shutil.which("npm"):
        say("mail: npm is not installed: Mailpit's API and SMTP work, its inbox page stays bare")
        return False
    for step in (
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        ["npm", "run", "package"],
    ):
        _run_step(step, src)
    return True


def _run_step(args: list[str], cwd: Path) -> None:
    """Run one build step, saying every 15 s that it still runs; fail with its last lines."""
    label, started, stop = " ".join(args[:2]), time.monotonic(), threading.Event()

    def report() -> None:
        while not stop.wait(15):
            say(f"  mail: {label} still running ({int(time.monotonic() - started)}s)")

    threading.Thread(target=report, daemon=True).start()
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    finally:
        stop.set()
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise MailUnavailable(f"`{' '.join(args)}` failed while building Mailpit:\n{tail}")
    say(f"  mail: {label}: done in {int(time.monotonic() - started)}s")


def start_mail(stack: Stack, binary: Path) -> Mailbox:
    """Start Mailpit under the stack's supervisor, on loopback; wait until it is ready.

    Mail is kept in <run dir>/mail/mailpit.db (the newest 5,000 messages)."""
    data = stack.run_dir / "mail"
    data.mkdir(parents=True, exist_ok=True)
    box = Mailbox(stack._port(SMTP_PORT, "mail SMTP"), stack._port(WEB_PORT, "mail inbox"))
    ready = partial(http_ok, f"{box.url}/readyz")
    proc = stack._spawn(
        "mail",
        [
            str(binary),
            "--smtp",
            f"{LOOPBACK}:{box.smtp_port}",
            "--listen",
            f"{LOOPBACK}:{box.web_port}",
            "--database",
            str(data / "mailpit.db"),
            "--max",
            "5000",
            "--disable-version-check",  # it would ask GitHub for releases
            "--smtp-disable-rdns",
        ],
        probe=ready,
    )
    proc.wait_ready(ready, f"ready at {box.url}/readyz", 60)
    say(f"mail: SMTP {LOOPBACK}:{box.smtp_port}, inbox {box.url} (pid {proc.pid})")
    return box


def main_mail() -> int:
    """`devstack mail`: build (or find) Mailpit and print where it is."""
    try:
        binary = ensure_mailpit()
    except DevstackError as exc:
        say(f"error: {exc}")
        return 1
    print(binary)
    return 0


def with_mail(stack: Stack) -> Mailbox | None:
    """Start Mailpit for a stack that is about to start: the notifier's e-mail channel is
    switched on and its binding pointed at it. Without Mailpit (no Go, or the build failed)
    the stack runs without e-mail, and says why."""
    try:
        binary = ensure_mailpit()
    except MailUnavailable as exc:
        say(f"mail: running without e-mail: {exc}")
        return None
    try:
        box = start_mail(stack, binary)
    except DevstackError:
        stack.stop()
        raise
    stack.component_metadata["notify-email"] = box.binding_metadata()
    stack.env["MAIL_INBOX_URL"] = box.url  # for whoever wants to read the mail (tests)
    channels = stack.env.get("NOTIFY_CHANNELS", "log")
    stack.env["NOTIFY_CHANNELS"] = ",".join(dict.fromkeys([*channels.split(","), "email"]))
    return box
