"""devstack supervises: what exits is restarted with backoff, what keeps crashing stops the
stack, a hung process is left alone, and a running stack answers ps, kill and restart.

Real child processes (sleep, sh), no Dapr: each test takes a second or two."""

from __future__ import annotations

import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.__main__ import main
from devstack.control import ControlServer, NoStack, claim, request
from devstack.procs import Proc
from devstack.supervisor import CrashLoop, NoSuchProcess, Supervisor


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A short path: a unix socket's path may not be longer than 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ds-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    sup = Supervisor(backoff_start=0.05, backoff_cap=0.4, stable_after=5.0, crash_loop_limit=3)
    yield sup
    for watch in sup.watches.values():
        watch.proc.stop(grace=2)


def started(sup: Supervisor, run_dir: Path, name: str, script: str) -> Proc:
    proc = Proc(name, ["sh", "-c", script], run_dir / f"{name}.log").start()
    sup.add(proc)
    return proc


def sleeper(sup: Supervisor, run_dir: Path, name: str = "app") -> Proc:
    return started(sup, run_dir, name, "exec sleep 60")


def until(sup: Supervisor, condition: object, timeout: float = 10.0) -> None:
    """Run the supervisor's checks until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sup.check()
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("the supervisor did not get there in time")


def test_a_killed_process_is_started_again_and_the_exit_is_named(
    supervisor: Supervisor, run_dir: Path
) -> None:
    proc = sleeper(supervisor, run_dir)
    first = proc.pid
    supervisor.kill("app", "KILL")
    until(supervisor, lambda: supervisor.watches["app"].restarts == 1 and proc.alive())
    watch = supervisor.watches["app"]
    assert proc.pid != first
    assert watch.last_exit == "killed by SIGKILL (devstack kill --signal KILL)"
    assert "restart 1 after it exited: killed by SIGKILL" in proc.log_path.read_text()


def test_the_backoff_doubles_up_to_its_cap_and_starts_over_after_a_stable_run(
    supervisor: Supervisor, run_dir: Path
) -> None:
    supervisor.crash_loop_limit = 100
    proc = started(supervisor, run_dir, "flaky", "exit 3")
    watch = supervisor.watches["flaky"]

    def next_delay() -> float:
        assert proc.popen is not None
        proc.popen.wait(5)
        now = time.monotonic()
        supervisor.check(now)
        assert watch.restart_at is not None
        delay = watch.restart_at - now
        supervisor.check(watch.restart_at)  # the backoff is over: start it again
        return round(delay, 2)

    assert [next_delay() for _ in range(5)] == [0.05, 0.1, 0.2, 0.4, 0.4]
    proc.started_at -= supervisor.stable_after  # as if this run had lasted
    assert next_delay() == 0.05
    assert watch.last_exit == "exit code 3"
    assert watch.restarts == 6


def test_a_process_that_keeps_crashing_stops_the_stack_with_its_log(
    supervisor: Supervisor, run_dir: Path
) -> None:
    started(supervisor, run_dir, "broken", "echo 'cannot open config.yaml'; exit 2")
    with pytest.raises(CrashLoop) as caught:
        until(supervisor, lambda: False)
    said = str(caught.value)
    assert "broken keeps crashing: it exited 3 times in a row" in said
    assert "(last: exit code 2)" in said
    assert "cannot open config.yaml" in said  # the tail of its log


def test_exits_asked_for_do_not_count_as_a_crash_loop(
    supervisor: Supervisor, run_dir: Path
) -> None:
    proc = sleeper(supervisor, run_dir)
    for n in range(1, supervisor.crash_loop_limit + 2):
        supervisor.kill("app", "TERM" if n % 2 else "KILL")
        until(supervisor, lambda n=n: supervisor.watches["app"].restarts == n and proc.alive())
    assert supervisor.watches["app"].crashes == 0


def test_a_stopped_process_is_hung_not_crashed_and_is_left_alone(
    supervisor: Supervisor, run_dir: Path
) -> None:
    proc = sleeper(supervisor, run_dir)
    pid = proc.pid
    supervisor.kill("app", "STOP")
    until(supervisor, proc.stopped)
    for _ in range(10):
        supervisor.check()
        time.sleep(0.02)
    (row,) = supervisor.rows()
    assert (row["pid"], row["state"], row["ready"], row["restarts"]) == (
        pid,
        "stopped (SIGSTOP)",
        False,
        0,
    )
    supervisor.kill("app", "CONT")
    until(supervisor, lambda: not proc.stopped())
    (row,) = supervisor.rows()
    assert (row["pid"], row["state"], row["ready"]) == (pid, "running", True)


def test_a_restart_asked_for_starts_at_once_and_is_no_crash(
    supervisor: Supervisor, run_dir: Path
) -> None:
    proc = sleeper(supervisor, run_dir)
    first = proc.pid
    supervisor.kill("app", "STOP")  # even a hung one
    new = supervisor.restart("app")
    watch = supervisor.watches["app"]
    assert new == proc.pid != first and proc.alive()
    assert (watch.restarts, watch.crashes, watch.restart_at) == (1, 0, None)
    assert watch.last_exit == "SIGTERM from devstack restart"


def test_commands_name_what_is_wrong(supervisor: Supervisor, run_dir: Path) -> None:
    sleeper(supervisor, run_dir, "orders")
    with pytest.raises(NoSuchProcess, match="there is no process 'order'; the stack has orders"):
        supervisor.kill("order", "KILL")
    with pytest.raises(NoSuchProcess, match="signal 'HUP': use one of KILL, TERM"):
        supervisor.kill("orders", "HUP")


@pytest.fixture
def running(supervisor: Supervisor, run_dir: Path) -> Iterator[Supervisor]:
    """The supervisor's loop on a thread, with its control socket, as `devstack run` has."""
    sleeper(supervisor, run_dir, "redis")
    sleeper(supervisor, run_dir, "orders")
    stop = threading.Event()
    with ControlServer(claim(run_dir), supervisor):
        thread = threading.Thread(target=supervisor.run, args=(stop, 0.02))
        thread.start()
        yield supervisor
        stop.set()
        thread.join(5)


def test_ps_kill_and_restart_work_against_a_running_stack(
    running: Supervisor, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orders = running.watches["orders"].proc
    first = orders.pid
    assert main(["kill", "orders", "--wait", "--run-dir", str(run_dir)]) == 0
    said = capsys.readouterr().out
    assert f"sent SIGKILL to orders (pid {first})" in said
    assert f"orders is back: pid {orders.pid}, ready " in said and orders.pid != first
    assert main(["ps", "--run-dir", str(run_dir)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["NAME", "PID", "STATE", "RESTARTS", "READY"]
    row = next(line for line in table if line.startswith("orders "))
    assert row.split()[:5] == ["orders", str(orders.pid), "running", "1", "yes"]
    assert "killed by SIGKILL (devstack kill --signal KILL)" in row
    assert main(["restart", "orders", "--run-dir", str(run_dir)]) == 0
    assert f"orders restarted as pid {orders.pid}; ready" in capsys.readouterr().out
    assert main(["kill", "nobody", "--run-dir", str(run_dir)]) == 1
    assert "there is no process 'nobody'" in capsys.readouterr().err
    assert main(["kill", "orders", "--signal", "stop", "--wait", "--run-dir", str(run_dir)]) == 1
    assert "--wait waits for a restart; SIGSTOP ends nothing" in capsys.readouterr().err


def test_the_control_socket_is_private_and_the_run_dir_taken(
    running: Supervisor, run_dir: Path
) -> None:
    mode = (run_dir / "devstack.sock").stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    with pytest.raises(NoStack, match=r"a stack is running in .* already"):
        claim(run_dir)


def test_without_a_stack_the_commands_say_so_and_a_stale_socket_is_cleared(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ps", "--run-dir", str(run_dir)]) == 1
    assert f"no stack is running in {run_dir}" in capsys.readouterr().err
    with socket.socket(socket.AF_UNIX) as left:  # what a killed devstack leaves behind
        left.bind(str(run_dir / "devstack.sock"))
    with pytest.raises(NoStack):
        request(run_dir, {"command": "ps"})
    claim(run_dir)
    assert not (run_dir / "devstack.sock").exists()


@pytest.mark.parametrize("command", ["run", "ps", "kill", "restart", "runtime"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert f"usage: devstack {command}" in capsys.readouterr().out
