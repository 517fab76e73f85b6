"""Keep the stack's processes running, as Kubernetes keeps a pod's containers with
restartPolicy Always.

A process that exits, whatever the reason, is started again after a backoff: 1 s, 2 s, 4 s ...
up to 30 s, back to 1 s once it has stayed up a minute. One that keeps crashing (5 exits of its
own in a row, none after a minute's run) stops the stack: something is wrong that a restart
does not mend. A stopped process (SIGSTOP) is hung, not crashed: it is shown as stopped and left
alone until someone sends it SIGCONT.

Everything that starts a process runs on one thread, the loop's (`run`, or the caller's when no
loop runs): each child is told to die with the thread that started it (PR_SET_PDEATHSIG, so
that nothing outlives a killed devstack), so that thread must live as long as the stack. Other
threads (the control socket, a test) hand work to it with `call`.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from devstack.errors import DevstackError
from devstack.log import say
from devstack.procs import Proc, describe_exit

T = TypeVar("T")

BACKOFF_START = 1.0
BACKOFF_CAP = 30.0
STABLE_AFTER = 60.0  # seconds up after which the next exit starts the backoff over
CRASH_LOOP_LIMIT = 5  # exits of its own in a row, none after STABLE_AFTER, stop the stack
SIGNALS = ("KILL", "TERM", "INT", "STOP", "CONT")  # what `devstack kill` may send


class CrashLoop(DevstackError):
    """A process keeps crashing; the stack stops."""


class NoSuchProcess(DevstackError):
    """A command named a process the stack does not have, or one not running now."""


@dataclass
class Watch:
    """What the supervisor knows about one process."""

    proc: Proc
    restarts: int = 0
    quick_exits: int = 0  # exits in a row, each before STABLE_AFTER: the backoff's exponent
    crashes: int = 0  # of those, the ones nobody asked for: the crash-loop count
    last_exit: str = ""
    exited_at: float | None = None
    restart_at: float | None = None  # set while it waits out its backoff
    expected: str = ""  # who asked for the next exit (devstack kill, restart)


@dataclass
class Supervisor:
    """Restarts what exits; `check` once per tick does the work (see the module docstring)."""

    backoff_start: float = BACKOFF_START
    backoff_cap: float = BACKOFF_CAP
    stable_after: float = STABLE_AFTER
    crash_loop_limit: int = CRASH_LOOP_LIMIT
    watches: dict[str, Watch] = field(default_factory=dict)
    _calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = field(
        default_factory=queue.SimpleQueue
    )
    _loop: int | None = None  # the thread that runs the loop, while it runs

    def add(self, proc: Proc) -> None:
        self.watches[proc.name] = Watch(proc)

    def watch(self, name: str) -> Watch:
        if name not in self.watches:
            raise NoSuchProcess(
                f"there is no process {name!r}; the stack has {', '.join(self.watches)}"
            )
        return self.watches[name]

    def run(self, stop: threading.Event, tick: float = 0.2) -> None:
        """Supervise until `stop` is set; raise CrashLoop if a process keeps crashing."""
        self._loop = threading.get_ident()
        try:
            while not stop.is_set():
                self._run_calls()
                self.check()
                stop.wait(tick)
        finally:
            self._loop = None
            self._run_calls(stopping=True)  # answer what is queued: no caller waits forever

    def call(self, fn: Callable[[], T], timeout: float = 60.0) -> T:
        """Run `fn` on the loop's thread (at once when no loop runs, or from the loop itself)."""
        if self._loop is None or self._loop == threading.get_ident():
            return fn()
        done: Future[T] = Future()
        self._calls.put((fn, done))
        return done.result(timeout)

    def _run_calls(self, stopping: bool = False) -> None:
        while True:
            try:
                fn, done = self._calls.get_nowait()
            except queue.Empty:
                return
            if not done.set_running_or_notify_cancel():
                continue
            if stopping:  # start nothing while the stack stops
                done.set_exception(DevstackError("the stack is stopping"))
                continue
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

    def check(self, now: float | None = None) -> None:
        """Notice exits, start what has waited out its backoff."""
        now = time.monotonic() if now is None else now
        for watch in self.watches.values():
            popen = watch.proc.popen
            if watch.restart_at is not None:
                if now >= watch.restart_at:
                    self._start_again(watch)
            elif popen is not None and popen.poll() is not None:
                self._exited(watch, popen.returncode, now)

    def _exited(self, watch: Watch, code: int, now: float) -> None:
        proc = watch.proc
        if now - proc.started_at >= self.stable_after:
            watch.quick_exits = watch.crashes = 0
        watch.quick_exits += 1
        why = describe_exit(code)
        if watch.expected:
            why += f" ({watch.expected})"
        else:
            watch.crashes += 1
        watch.last_exit, watch.exited_at, watch.expected = why, now, ""
        if watch.crashes >= self.crash_loop_limit:
            raise CrashLoop(
                f"{proc.name} keeps crashing: it exited {watch.crashes} times in a row, each "
                f"within {self.stable_after:.0f}s of starting (last: {why}); stopping the "
                f"stack. Last lines of {proc.log_path}:\n{proc.tail()}"
            )
        delay = min(self.backoff_start * 2 ** (watch.quick_exits - 1), self.backoff_cap)
        watch.restart_at = now + delay
        say(
            f"{proc.name} (pid {proc.pid}) exited: {why}; restart {watch.restarts + 1} in "
            f"{delay:g}s (log {proc.log_path})"
        )

    def _start_again(self, watch: Watch, why: str = "") -> None:
        watch.restart_at = None
        watch.restarts += 1
        note = why or f"restart {watch.restarts} after it exited: {watch.last_exit}"
        watch.proc.start(note)
        say(f"{watch.proc.name}: started again as pid {watch.proc.pid} (restart {watch.restarts})")
        threading.Thread(target=self._announce_ready, args=(watch,), daemon=True).start()

    def _announce_ready(self, watch: Watch, timeout: float = 120.0) -> None:
        """Say when a restarted process is ready again (and how long it was out)."""
        proc, pid, started = watch.proc, watch.proc.pid, watch.proc.started_at
        exited = watch.exited_at
        while time.monotonic() - started < timeout and proc.alive() and proc.pid == pid:
            if proc.ready():
                now = time.monotonic()
                out = f", {now - exited:.1f}s after it exited" if exited is not None else ""
                say(f"{proc.name}: ready again {now - started:.1f}s after the restart{out}")
                return
            time.sleep(0.2)

    def kill(self, name: str, signame: str) -> int:
        """Send SIG`signame` to a process (its group); return its pid."""
        if signame.upper().removeprefix("SIG") not in SIGNALS:
            raise NoSuchProcess(f"signal {signame!r}: use one of {', '.join(SIGNALS)}")
        sig = signal.Signals[f"SIG{signame.upper().removeprefix('SIG')}"]
        watch = self.watch(name)
        if not watch.proc.alive() or watch.restart_at is not None:
            raise NoSuchProcess(f"{name} is not running now ({self.state(watch)})")
        if sig not in (signal.SIGSTOP, signal.SIGCONT):
            watch.expected = f"devstack kill --signal {sig.name.removeprefix('SIG')}"
        watch.proc.signal(sig)
        say(f"{name} (pid {watch.proc.pid}): sent {sig.name} (devstack kill)")
        return watch.proc.pid

    def restart(self, name: str, crash: bool = False) -> int:
        """Stop a process (SIGTERM, or SIGKILL when `crash`) and start it again at once, even
        from its backoff; a restart asked for is no crash. Return the new pid."""
        watch = self.watch(name)
        how = "SIGKILL" if crash else "SIGTERM"
        if watch.proc.alive():
            watch.last_exit = f"{how} from devstack restart"
            watch.expected = "devstack restart"
            if crash:
                watch.proc.crash()
            else:
                watch.proc.stop()
            watch.exited_at = time.monotonic()
        elif watch.restart_at is None:
            watch.exited_at = None  # it ended unseen (no loop runs): when is unknown
        self._start_again(watch, f"restart {watch.restarts + 1}, asked for ({how})")
        return watch.proc.pid

    def state(self, watch: Watch) -> str:
        if watch.restart_at is not None:
            return f"waiting ({max(0.0, watch.restart_at - time.monotonic()):.0f}s to restart)"
        if watch.proc.stopped():
            return "stopped (SIGSTOP)"
        return "running" if watch.proc.alive() else "exited"

    def rows(self) -> list[dict[str, Any]]:
        """What `devstack ps` shows, one dict per process; probes run here, off the loop."""
        now = time.monotonic()
        rows = []
        for name, watch in self.watches.items():
            proc = watch.proc
            alive = proc.alive() and watch.restart_at is None
            rows.append(
                {
                    "name": name,
                    "pid": proc.pid if alive else None,
                    "state": self.state(watch),
                    "restarts": watch.restarts,
                    "ready": alive and proc.ready(),
                    "up_s": round(now - proc.started_at, 1) if alive else None,
                    "last_exit": watch.last_exit,
                    "last_exit_ago_s": (
                        round(now - watch.exited_at, 1) if watch.exited_at is not None else None
                    ),
                    "log": str(proc.log_path),
                }
            )
        return rows
