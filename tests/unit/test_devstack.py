"""devstack: the run file, rendered resources, and clear one-line failures."""

import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from devstack import debian, runtime
from devstack import postgres as devstack_postgres
from devstack import redis as devstack_redis
from devstack.errors import DevstackError
from devstack.procs import PortBusy, ensure_port_free
from devstack.render import render_resources
from devstack.runfile import RunFile, RunFileError
from devstack.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


def test_the_run_file_describes_three_apps_on_fixed_loopback_ports() -> None:
    spec = RunFile.load(ROOT / "dapr.yaml")
    assert [a.app_id for a in spec.apps] == ["orders", "approvals", "notifier"]
    assert (spec.placement_port, spec.scheduler_port) == (50005, 50006)
    ports = [p for a in spec.apps for p in (a.app_port, a.http_port, a.grpc_port, a.metrics_port)]
    assert len(set(ports)) == len(ports)
    assert not {8080, 9090, 2379, 2380} & set(ports)


def test_a_run_file_without_a_port_names_what_is_missing(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "dapr.yaml").read_text())
    del doc["apps"][1]["appPort"]
    bad = tmp_path / "dapr.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(RunFileError, match="app approvals has no `appPort`"):
        RunFile.load(bad)


def test_resources_are_rendered_with_this_stacks_addresses(tmp_path: Path) -> None:
    stack = Stack(
        run_file=ROOT / "dapr.yaml",
        run_dir=tmp_path,
        redis_port=7777,
        component_metadata={"notify-webhook": {"url": "http://127.0.0.1:1/x"}},
    )
    resources, config = render_resources(stack, RunFile.load(ROOT / "dapr.yaml"))
    docs = {
        d["metadata"]["name"]: d
        for f in resources.glob("*.yaml")
        for d in yaml.safe_load_all(f.read_text())
        if d
    }
    meta = {
        name: {m["name"]: m["value"] for m in d["spec"].get("metadata", [])}
        for name, d in docs.items()
        if d["kind"] == "Component"
    }
    assert meta["pubsub"]["redisHost"] == meta["statestore"]["redisHost"] == "127.0.0.1:7777"
    assert meta["statestore"]["actorStateStore"] == "true"
    assert meta["notify-webhook"]["url"] == "http://127.0.0.1:1/x"
    resolver = yaml.safe_load(config.read_text())["spec"]["nameResolution"]
    assert resolver["component"] == "sqlite"
    assert resolver["configuration"]["connectionString"] == str(tmp_path / "nameresolution.db")


def test_a_busy_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortBusy, match=f"port {port} \\(redis\\) is already in use"):
            ensure_port_free(port, "redis")


def test_a_listener_that_reuses_its_address_still_makes_the_port_busy() -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and redis do
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(PortBusy):
            ensure_port_free(taken.getsockname()[1], "orders app")


def test_connections_left_in_time_wait_do_not_make_a_port_busy() -> None:
    """After a stack stops, its closed connections linger in TIME-WAIT for a minute on the
    ports it served; `make run` right after must not take that for a busy port."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as every server does
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server closes first: its end of the connection goes to TIME-WAIT
        client.recv(1)
        client.close()
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # what the check did before: the port looks taken
    ensure_port_free(port, "orders app")


@pytest.fixture
def empty_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No runtime installed or cached anywhere."""
    monkeypatch.setenv("ORDER_APPROVALS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_a_half_finished_build_is_not_a_cached_runtime(empty_machine: Path) -> None:
    bin_dir = runtime.runtime_dir("9.9.9") / ".dapr" / "bin"
    bin_dir.mkdir(parents=True)
    for name in runtime.BINARIES:
        (bin_dir / name).write_text("")
    assert runtime._cached("9.9.9") is None
    (bin_dir / runtime.MARKER).write_text("{}")
    assert runtime._cached("9.9.9") is not None


def test_without_go_the_error_says_what_to_install(
    empty_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(empty_machine / "nothing"))
    with pytest.raises(runtime.RuntimeUnavailable, match="Go is not installed"):
        runtime.ensure_runtime("9.9.9")


@pytest.fixture
def refusing_proxy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[str]]:
    """A Go module proxy on loopback that serves nothing (404, as the real one answers for a
    version it lacks), with an empty module cache: the test needs no network."""
    asked: list[str] = []

    class Refuse(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = f"not found: {self.path}".encode()
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GOPROXY", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("GOSUMDB", "off")
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "modcache"))
    monkeypatch.setenv("GOFLAGS", "-modcacherw")
    try:
        yield asked
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(shutil.which("go") is None, reason="needs Go to ask the module proxy")
def test_a_version_the_proxy_does_not_serve_is_named(
    empty_machine: Path, refusing_proxy: list[str]
) -> None:
    with pytest.raises(
        runtime.RuntimeUnavailable, match=r"github.com/dapr/dapr@v0\.0\.1 is not served"
    ):
        runtime.ensure_runtime("0.0.1")
    assert any(path.startswith("/github.com/dapr/dapr/@v/v0.0.1") for path in refusing_proxy)


def test_no_redis_and_no_root_says_what_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devstack_redis, "find_redis_server", lambda: None)
    monkeypatch.setattr(debian.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(debian.shutil, "which", lambda name: "/usr/bin/" + name)
    with pytest.raises(devstack_redis.RedisUnavailable, match="sudo apt-get install -y redis"):
        devstack_redis.ensure_redis_server()


def test_the_stack_never_hands_out_a_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    offers = iter([41000, 41000, 41000, 41001])  # the kernel may offer a port again
    monkeypatch.setattr("devstack.stack.free_port", lambda: next(offers))
    stack = Stack(run_file=ROOT / "dapr.yaml", run_dir=ROOT / ".run", free_ports=True)
    assert [stack._free(), stack._free()] == [41000, 41001]


def test_no_postgres_and_no_root_says_what_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devstack_postgres, "find_bin_dir", lambda: None)
    monkeypatch.setattr(debian.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(debian.shutil, "which", lambda name: "/usr/bin/" + name)
    with pytest.raises(
        devstack_postgres.PostgresUnavailable, match="apt-get install -y postgresql"
    ):
        devstack_postgres.ensure_postgres()


def test_an_unknown_state_store_is_named(tmp_path: Path) -> None:
    stack = Stack(run_file=ROOT / "dapr.yaml", run_dir=tmp_path / "run", state_store="mongo")
    with pytest.raises(DevstackError, match="STATE_STORE='mongo': choose one of redis, postgres"):
        stack.start()
