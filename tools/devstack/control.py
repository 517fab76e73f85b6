"""Commands against a running stack (`devstack ps`, `kill`, `restart`) over a unix socket.

`devstack run` listens on <run dir>/devstack.sock, mode 600 in a directory of mode 700, so only
its user can send commands; nothing listens on TCP. One JSON line asks, one JSON line answers:
{"command": "ps"}, {"command": "kill", "name": ..., "signal": "KILL"},
{"command": "restart", "name": ...}; the answer is {"ok": true, ...} or {"ok": false,
"error": ...}. The socket also tells a second `devstack run` that the run dir is taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.errors import DevstackError
from devstack.log import say
from devstack.supervisor import Supervisor

SOCKET_NAME = "devstack.sock"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with its NUL


class NoStack(DevstackError):
    """No stack runs in that run directory, or another one does already."""


def socket_path(run_dir: Path) -> Path:
    return run_dir.resolve() / SOCKET_NAME


def request(run_dir: Path, payload: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """Send one command to the stack running in `run_dir`; raise DevstackError on refusal."""
    path = socket_path(run_dir)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(path))
            conn.sendall(json.dumps(payload).encode() + b"\n")
            answer = conn.makefile("rb").readline()
    except (FileNotFoundError, ConnectionRefusedError):
        raise NoStack(
            f"no stack is running in {run_dir} (no one answers on {path}); start one with "
            "`make run`, or name its run dir with --run-dir"
        ) from None
    except OSError as exc:
        raise NoStack(f"cannot talk to the stack on {path}: {exc}") from None
    if not answer:
        raise NoStack(f"the stack on {path} closed the connection without an answer")
    reply: dict[str, Any] = json.loads(answer)
    if not reply.get("ok"):
        raise DevstackError(str(reply.get("error", "the stack refused the command")))
    return reply


def claim(run_dir: Path) -> Path:
    """Make sure no other stack runs in `run_dir`; remove a socket a killed devstack left."""
    path = socket_path(run_dir)
    if len(str(path)) > MAX_SOCKET_PATH:
        raise NoStack(
            f"the run dir's path is too long for a unix socket ({path}): use a shorter --run-dir"
        )
    if path.exists() or path.is_symlink():
        try:
            request(run_dir, {"command": "ps"}, timeout=5)
        except NoStack:
            path.unlink()  # stale: its devstack is gone
        else:
            raise NoStack(
                f"a stack is running in {run_dir} already (`devstack ps --run-dir {run_dir}` "
                "shows it): stop it first, or use another --run-dir"
            )
    return path


class ControlServer(socketserver.ThreadingUnixStreamServer):
    """Answers commands for one supervisor; each connection in its own thread."""

    daemon_threads = True

    def __init__(self, path: Path, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.path = path
        old = os.umask(0o177)  # the socket is created 0600: no window where others may connect
        try:
            super().__init__(str(path), _Handler)
        finally:
            os.umask(old)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> ControlServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def answer(self, ask: dict[str, Any]) -> dict[str, Any]:
        sup = self.supervisor
        command = ask.get("command")
        if command == "ps":
            return {"processes": sup.rows()}
        name = str(ask.get("name", ""))
        if command == "kill":
            signame = str(ask.get("signal", "KILL"))
            return {"pid": sup.call(lambda: sup.kill(name, signame))}
        if command == "restart":
            pid = sup.call(lambda: sup.restart(name))
            return {"pid": pid, "ready": _wait_ready(sup, name, pid)}
        raise DevstackError(f"unknown command {command!r}: ps, kill or restart")


def in_background(supervisor: Supervisor, run_dir: Path) -> Callable[[], None]:
    """Run the supervisor's loop and its control socket on a thread of their own (what
    `devstack run` does on its main thread); return what stops them. A process that keeps
    crashing ends the loop with an error in the log; the stack's owner stops the stack."""

    def loop() -> None:
        try:
            with ControlServer(claim(run_dir), supervisor):
                listening.set()
                supervisor.run(stop)
        except Exception as exc:
            say(f"supervision ended: {exc}")
        finally:
            listening.set()

    stop, listening = threading.Event(), threading.Event()
    thread = threading.Thread(target=loop, name="devstack-supervisor", daemon=True)
    thread.start()
    listening.wait(10)

    def end() -> None:
        stop.set()
        thread.join(30)

    return end


def _wait_ready(sup: Supervisor, name: str, pid: int, timeout: float = 90.0) -> float | None:
    """Seconds until the restarted process was ready; None if it was not within `timeout`."""
    proc = sup.watch(name).proc
    start = time.monotonic()
    while time.monotonic() - start < timeout and proc.alive() and proc.pid == pid:
        if proc.ready():
            return round(time.monotonic() - start, 1)
        time.sleep(0.1)
    return None


class _Handler(socketserver.StreamRequestHandler):
    server: ControlServer

    def handle(self) -> None:
        try:
            ask = json.loads(self.rfile.readline() or b"{}")
            reply = {"ok": True, **self.server.answer(ask)}
        except DevstackError as exc:
            reply = {"ok": False, "error": str(exc)}
        except Exception as exc:  # a bad request must not take the stack down
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        self.wfile.write(json.dumps(reply).encode() + b"\n")


def restarts_of(run_dir: Path, name: str) -> int:
    """How often the stack in `run_dir` has started `name` again (0 for an unknown name)."""
    rows = request(run_dir, {"command": "ps"})["processes"]
    return next((int(r["restarts"]) for r in rows if r["name"] == name), 0)


def wait_until_back(run_dir: Path, name: str, restarts: int, timeout: float = 120.0) -> str:
    """Wait until `name` was started again (more than `restarts` restarts) and is ready; say
    how long that took, or raise if it did not happen within `timeout`."""
    start = time.monotonic()
    row: dict[str, Any] = {}
    while time.monotonic() - start < timeout:
        rows = request(run_dir, {"command": "ps"})["processes"]
        row = next(r for r in rows if r["name"] == name)
        if row["restarts"] > restarts and row["ready"]:
            took = time.monotonic() - start
            return f"{name} is back: pid {row['pid']}, ready {took:.1f}s after the signal"
        time.sleep(0.1)
    raise DevstackError(
        f"{name} was not back within {timeout:.0f}s (now: {row.get('state')}); see {row.get('log')}"
    )


def format_ps(rows: list[dict[str, Any]]) -> str:
    """The table `devstack ps` prints."""

    def ago(seconds: float | None) -> str:
        if seconds is None:
            return "-"
        s = int(seconds)
        return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"

    width = max([16, *(len(r["name"]) for r in rows)])
    row = "{:<" + str(width) + "} {:>7}  {:<24} {:>8}  {:<5}  {:>6}  {}"
    lines = [row.format("NAME", "PID", "STATE", "RESTARTS", "READY", "UP", "LAST EXIT")]
    for r in rows:
        last = f"{r['last_exit']}, {ago(r['last_exit_ago_s'])} ago" if r["last_exit"] else ""
        ready = "yes" if r["ready"] else "no"
        pid = r["pid"] or "-"
        lines.append(
            row.format(r["name"], pid, r["state"], r["restarts"], ready, ago(r["up_s"]), last)
        )
    return "\n".join(lines)
