"""Start, watch and stop child processes; wait for readiness by probing, never by sleeping blind."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from devstack.errors import DevstackError
from devstack.log import say

LOOPBACK = "127.0.0.1"
# How long a process may take to become ready before the stack gives up on it.
READY_TIMEOUT = float(os.environ.get("DEVSTACK_READY_TIMEOUT", "90"))


class PortBusy(DevstackError):
    """A port the stack needs is already in use."""


class StartupFailed(DevstackError):
    """A process exited early or did not become healthy in time."""


# Every child is started from this one thread, which lives as long as devstack: Linux sends
# the parent-death signal when the *thread* that forked a child ends, so a process started
# from a short-lived thread (a restart from a test's helper thread) would be killed with it.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="devstack-spawner")


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM us if devstack dies, even by SIGKILL (Linux)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    """A port that is free on loopback right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def ensure_port_free(port: int, owner: str) -> None:
    """Raise PortBusy if something listens on `port` (or holds it bound) on loopback.

    The test bind sets SO_REUSEADDR, as every server does, so connections of a stopped stack
    that linger in TIME-WAIT (for a minute) do not count: the server will bind past them."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            raise PortBusy(
                f"port {port} ({owner}) is already in use on {LOOPBACK}: stop what holds it "
                f"(`ss -ltnp 'sport = :{port}'`) or run with --free-ports"
            ) from None


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def redis_ping(port: int, password: str | None = None) -> bool:
    """True when redis-server on `port` answers PING (after AUTH, with a password)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1) as s:
            if password:
                s.sendall(b"AUTH " + password.encode() + b"\r\n")
                if not s.recv(64).startswith(b"+OK"):
                    return False
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def describe_exit(code: int | None) -> str:
    """How a process ended, in words: `exit code 1`, `killed by SIGKILL`."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class Proc:
    """One child process in its own session, with its output in a log file."""

    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    # Whether the process does its job (what the stack waited for when it started it).
    probe: Callable[[], bool] | None = None
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # time.monotonic()
    _log: IO[bytes] | None = None

    def start(self, note: str = "") -> Proc:
        """Start the process; `note` (e.g. why it is started again) goes into its log first."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log:
            self._log.close()
        self._log = self.log_path.open("ab")
        if note:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            self._log.write(f"---- devstack {stamp}: {note} ----\n".encode())
            self._log.flush()
        log = self._log
        self.popen = _SPAWNER.submit(
            subprocess.Popen,
            self.args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        ).result()
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stopped(self) -> bool:
        """True while the process is stopped (SIGSTOP): alive, but hung."""
        if not self.alive():
            return False
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[-1].split()[0] in ("T", "t")

    def ready(self) -> bool:
        """Running, not stopped, and its probe passes."""
        return self.alive() and not self.stopped() and (self.probe is None or self.probe())

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the process group: the process and anything it started."""
        if not self.alive():
            raise ProcessLookupError(f"{self.name} is not running")
        os.killpg(self.pid, sig)

    def wait_ready(
        self,
        probe: Callable[[], bool],
        what: str,
        timeout: float,
        companions: tuple[Proc, ...] = (),
    ) -> None:
        """Poll `probe` until it passes; fail fast if this process (or a companion it cannot
        be ready without, e.g. a sidecar's app) dies meanwhile."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while time.monotonic() < deadline:
            for proc in (self, *companions):
                if not proc.alive():
                    code = proc.popen.returncode if proc.popen else "?"
                    raise StartupFailed(
                        f"{proc.name} exited with code {code} before {self.name} was {what}; "
                        f"last lines of {proc.log_path}:\n{proc.tail()}"
                    )
            if probe():
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise StartupFailed(
            f"{self.name} did not reach {what} within {timeout:.0f}s; "
            f"last lines of {self.log_path}:\n{self.tail()}"
        )

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def crash(self) -> None:
        """SIGKILL the process group, as a crash would, and reap it."""
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)
        if self._log:
            self._log.close()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL after `grace` seconds."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
                os.killpg(self.popen.pid, signal.SIGCONT)  # a stopped process acts on it too
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                say(f"{self.name} (pid {self.popen.pid}) ignored SIGTERM; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        # Reap anything the process group left behind (e.g. a reloader's child).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        if self._log:
            self._log.close()
