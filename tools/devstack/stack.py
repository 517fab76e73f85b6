"""The local stack: redis-server, placement, scheduler, and each app of dapr.yaml with its daprd.

Everything listens on 127.0.0.1. Every stack makes its own secrets: a Redis password, and per
app an APP_API_TOKEN (sidecar -> app) and a DAPR_API_TOKEN (app -> sidecar), so no other process
on the machine can publish through a sidecar or call an app's subscription routes. They are
written to <run dir>/tokens.env (mode 600) for a person who wants to publish by hand.

The Dapr resources in components/ are rendered into the run directory with the stack's actual
Redis address and password and a SQLite name-resolution database, so the sidecars never use
mDNS (which multicasts on the LAN).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from devstack import postgres
from devstack.control import in_background
from devstack.errors import DevstackError
from devstack.keys import StackSecrets, write_private, write_tokens
from devstack.log import say
from devstack.procs import (
    LOOPBACK,
    Proc,
    ensure_port_free,
    free_port,
    http_ok,
    redis_ping,
)
from devstack.redis import ensure_redis_server
from devstack.render import render_resources
from devstack.runfile import App, AppSpec, RunFile
from devstack.runtime import Runtime, ensure_runtime
from devstack.supervisor import Supervisor

DEFAULT_REDIS_PORT = 6380
DEFAULT_POSTGRES_PORT = 5433
STATE_STORES = ("redis", "postgres")

READY_TIMEOUT = float(os.environ.get("DEVSTACK_READY_TIMEOUT", "90"))


@dataclass
class Stack:
    """Start with `start()` (or `with Stack(...)`); `stop()` ends every process it started.

    `supervisor` restarts what exits (devstack.supervisor) while something runs its loop:
    `devstack run` on its main thread, or `supervise()` on a thread of its own (tests that
    want it). Without a loop, nothing restarts by itself; `restart()` works either way."""

    run_file: Path
    run_dir: Path
    free_ports: bool = False
    env: dict[str, str] = field(default_factory=dict)
    redis_port: int = DEFAULT_REDIS_PORT
    # Component metadata to override when rendering, e.g. {"notify-webhook": {"url": ...}}.
    component_metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    # Extra app ids added to every scoped component (e.g. a benchmark's baseline app).
    also_scope: tuple[str, ...] = ()
    runtime: Runtime | None = None
    # Where workflows and app state live: "redis" (the default) or "postgres" (the production
    # choice; components/postgres/ replaces the matching files of components/).
    state_store: str = field(default_factory=lambda: os.environ.get("STATE_STORE", "redis"))
    postgres_port: int = DEFAULT_POSTGRES_PORT
    own_secrets: StackSecrets = field(default_factory=StackSecrets, repr=False)
    apps: dict[str, App] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    supervisor: Supervisor = field(default_factory=Supervisor)
    _given: set[int] = field(default_factory=set, repr=False)
    postgres_cluster: postgres.Cluster | None = field(default=None, repr=False)
    _unsupervise: Callable[[], None] | None = field(default=None, repr=False)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _free(self) -> int:
        """A free loopback port that this stack has not handed out already.

        A port given to a process is not bound until that process starts, so the kernel may
        offer it again meanwhile: remember what we gave out.
        """
        while (port := free_port()) in self._given:
            pass
        self._given.add(port)
        return port

    def _port(self, configured: int, owner: str) -> int:
        if self.free_ports:
            return self._free()
        ensure_port_free(configured, owner)
        self._given.add(configured)
        return configured

    def _spawn(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        probe: Callable[[], bool] | None = None,
    ) -> Proc:
        log = self.run_dir / "logs" / f"{name}.log"
        proc = Proc(name, args, log, env or {}, cwd, probe=probe).start()
        self.procs.append(proc)
        self.supervisor.add(proc)
        return proc

    def start(self) -> Stack:
        started = time.monotonic()
        if self.state_store not in STATE_STORES:
            raise DevstackError(
                f"STATE_STORE={self.state_store!r}: choose one of {', '.join(STATE_STORES)}"
            )
        spec = RunFile.load(self.run_file)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o700)  # tokens, keys and the Redis password live here
        try:
            rt = self.runtime or ensure_runtime()
            self.runtime = rt
            say(f"runtime: Dapr {rt.version} ({rt.source}) from {rt.bin_dir}")
            self._start_redis()
            if self.state_store == "postgres":
                self._start_postgres()
            placement, scheduler = self._start_control_plane(rt, spec)
            resources, config = self._render_resources(spec)
            self._start_apps(rt, spec, placement, scheduler, resources, config)
        except BaseException:
            self.stop()
            raise
        say(f"stack ready in {time.monotonic() - started:.1f}s; logs in {self.run_dir / 'logs'}")
        return self

    def _start_redis(self) -> None:
        binary = ensure_redis_server()
        self.redis_port = self._port(self.redis_port, "redis")
        data = self.run_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        conf = write_private(
            data / "redis.conf", f"requirepass {self.own_secrets.redis_password}\n"
        )
        proc = self._spawn(
            "redis",
            [
                str(binary),
                str(conf),  # the password, kept out of the process list
                "--bind",
                LOOPBACK,
                "--port",
                str(self.redis_port),
                "--dir",
                str(data),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
            ],
            probe=partial(redis_ping, self.redis_port, self.own_secrets.redis_password),
        )
        proc.wait_ready(
            partial(redis_ping, self.redis_port, self.own_secrets.redis_password),
            "answering PING",
            READY_TIMEOUT,
        )
        say(f"redis: {LOOPBACK}:{self.redis_port} (pid {proc.pid}, data {data})")

    def _start_postgres(self) -> None:
        bin_dir = postgres.ensure_postgres()
        self.postgres_port = self._port(self.postgres_port, "postgres")
        self.postgres_cluster = postgres.init_cluster(
            bin_dir, self.run_dir, self.postgres_port, self.own_secrets.redis_password
        )
        ready = partial(postgres.ready, bin_dir, self.postgres_port)
        proc = self._spawn("postgres", self.postgres_cluster.command, probe=ready)
        proc.wait_ready(ready, "accepting sessions", READY_TIMEOUT)
        say(
            f"postgres: {LOOPBACK}:{self.postgres_port} (pid {proc.pid}, data "
            f"{self.postgres_cluster.data}): the workflow state store"
        )

    def _start_control_plane(self, rt: Runtime, spec: RunFile) -> tuple[int, int]:
        placement = self._port(spec.placement_port, "placement")
        scheduler = self._port(spec.scheduler_port, "scheduler")
        p_health, s_health = self._free(), self._free()
        common = ["--metrics-listen-address", LOOPBACK, "--log-level", "info"]
        host_env = {"DAPR_HOST_IP": LOOPBACK}
        pproc = self._spawn(
            "placement",
            [
                str(rt.binary("placement")),
                "--port",
                str(placement),
                "--listen-address",
                LOOPBACK,
                "--healthz-port",
                str(p_health),
                "--healthz-listen-address",  # ignored by Dapr 1.18: see docs/operations.md
                LOOPBACK,
                "--metadata-enabled=false",  # no placement tables on that open health port
                "--metrics-port",
                str(self._free()),
                "--initial-cluster",
                f"dapr-placement-0={LOOPBACK}:{self._free()}",
                *common,
            ],
            host_env,
            probe=partial(http_ok, f"http://{LOOPBACK}:{p_health}/healthz"),
        )
        etcd_dir = self.run_dir / "scheduler-etcd"
        sproc = self._spawn(
            "scheduler",
            [
                str(rt.binary("scheduler")),
                "--port",
                str(scheduler),
                "--listen-address",
                LOOPBACK,
                "--healthz-port",
                str(s_health),
                "--healthz-listen-address",  # ignored by Dapr 1.18: see docs/operations.md
                LOOPBACK,
                "--metrics-port",
                str(self._free()),
                "--override-broadcast-host-port",
                f"{LOOPBACK}:{scheduler}",
                "--etcd-data-dir",
                str(etcd_dir),
                "--etcd-client-port",
                str(self._free()),
                "--etcd-client-listen-address",
                LOOPBACK,
                "--etcd-initial-cluster",
                f"dapr-scheduler-server-0=http://{LOOPBACK}:{self._free()}",
                "--id",
                "dapr-scheduler-server-0",
                *common,
            ],
            host_env,
            probe=partial(http_ok, f"http://{LOOPBACK}:{s_health}/healthz"),
        )
        for proc, port in ((pproc, p_health), (sproc, s_health)):
            url = f"http://{LOOPBACK}:{port}/healthz"
            proc.wait_ready(partial(http_ok, url), f"healthy at {url}", READY_TIMEOUT)
        say(
            f"placement: {LOOPBACK}:{placement} (pid {pproc.pid}); "
            f"scheduler: {LOOPBACK}:{scheduler} (pid {sproc.pid})"
        )
        return placement, scheduler

    def _render_resources(self, spec: RunFile) -> tuple[Path, Path]:
        return render_resources(self, spec)

    def _start_apps(
        self,
        rt: Runtime,
        spec: RunFile,
        placement: int,
        scheduler: int,
        resources: Path,
        config: Path,
    ) -> None:
        pending: list[tuple[Proc, Proc, App, AppSpec]] = []
        for app in spec.apps:
            ports = App(
                app.app_id,
                self._port(app.app_port, f"{app.app_id} app"),
                self._port(app.http_port, f"{app.app_id} sidecar HTTP"),
                self._port(app.grpc_port, f"{app.app_id} sidecar gRPC"),
                internal_grpc_port=self._free(),
                dapr_api_token=secrets.token_urlsafe(32),
                app_api_token=secrets.token_urlsafe(32),
            )
            metrics = self._port(app.metrics_port, f"{app.app_id} sidecar metrics")
            tokens = {
                "APP_API_TOKEN": ports.app_api_token,
                "DAPR_API_TOKEN": ports.dapr_api_token,
            }
            sidecar_env = {**spec.common_env, **self.env, **tokens, "DAPR_HOST_IP": LOOPBACK}
            daprd = self._spawn(
                f"{app.app_id}-daprd",
                [
                    str(rt.binary("daprd")),
                    "--mode",
                    "standalone",
                    "--app-id",
                    app.app_id,
                    "--app-port",
                    str(ports.app_port),
                    "--app-protocol",
                    "http",
                    "--app-channel-address",
                    LOOPBACK,
                    "--dapr-http-port",
                    str(ports.http_port),
                    "--dapr-grpc-port",
                    str(ports.grpc_port),
                    "--dapr-internal-grpc-port",
                    str(ports.internal_grpc_port),
                    "--dapr-internal-grpc-listen-address",
                    LOOPBACK,
                    "--dapr-listen-addresses",
                    LOOPBACK,
                    "--metrics-port",
                    str(metrics),
                    "--metrics-listen-address",
                    LOOPBACK,
                    "--placement-host-address",
                    f"{LOOPBACK}:{placement}",
                    "--scheduler-host-address",
                    f"{LOOPBACK}:{scheduler}",
                    "--resources-path",
                    str(resources),
                    "--config",
                    str(config),
                    "--log-level",
                    spec.log_level,
                    "--enable-app-health-check",
                    "--app-health-check-path",
                    app.health_path,
                    "--app-health-probe-interval",
                    "2",
                ],
                sidecar_env,
                cwd=self.run_dir,
                probe=partial(http_ok, f"{ports.dapr_url}/v1.0/healthz"),
            )
            command = [sys.executable if c == "python" else c for c in app.command]
            app_env = {
                **spec.common_env,
                **app.env,
                **self.env,
                **tokens,
                "APP_ID": app.app_id,
                "APP_PORT": str(ports.app_port),
                "APP_HOST": LOOPBACK,
                "DAPR_HTTP_PORT": str(ports.http_port),
                "DAPR_GRPC_PORT": str(ports.grpc_port),
                "DAPR_RUNTIME_HOST": LOOPBACK,
                "PYTHONUNBUFFERED": "1",
            }
            readyz = partial(http_ok, f"{ports.app_url}/readyz", timeout=3.0)
            proc = self._spawn(app.app_id, command, app_env, cwd=app.app_dir, probe=readyz)
            pending.append((proc, daprd, ports, app))
        for proc, daprd, ports, app in pending:
            daprd.wait_ready(
                partial(http_ok, f"{ports.dapr_url}/v1.0/healthz"),
                f"healthy at {ports.dapr_url}/v1.0/healthz",
                READY_TIMEOUT,
                companions=(proc,),
            )
            proc.wait_ready(
                partial(http_ok, f"{ports.app_url}/readyz"),
                f"ready at {ports.app_url}/readyz",
                READY_TIMEOUT,
            )
            self.apps[app.app_id] = ports
            write_tokens(self.run_dir, self.apps.values())
            say(
                f"{app.app_id}: app {ports.app_url} (pid {proc.pid}); sidecar HTTP "
                f"{ports.dapr_url}, gRPC {LOOPBACK}:{ports.grpc_port} (pid {daprd.pid})"
            )

    def restart(self, name: str, crash: bool = True) -> None:
        """Kill one process (SIGKILL when `crash`) and start it again with the same arguments,
        at once (a restart asked for, not a crash); for an app, wait until it is ready again."""
        proc = self.supervisor.watch(name).proc
        self.supervisor.call(lambda: self.supervisor.restart(name, crash=crash))
        if name in self.apps:
            proc.wait_ready(proc.ready, f"ready at {self.apps[name].app_url}/readyz", READY_TIMEOUT)
        say(f"{name}: restarted (pid {proc.pid})")

    def supervise(self) -> Stack:
        """Restart what exits from now on, as `devstack run` does, with its control socket
        (`devstack ps --run-dir ...`), on a thread of its own (control.in_background)."""
        self._unsupervise = in_background(self.supervisor, self.run_dir)
        return self

    def stop(self) -> None:
        """Stop every process this stack started, apps first, redis last."""
        if self._unsupervise is not None:
            self._unsupervise()
            self._unsupervise = None
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        if self.procs:
            say(f"stopped {len(self.procs)} processes")
        self.procs.clear()
        self.supervisor.watches.clear()
        if self.postgres_cluster is not None:
            self.postgres_cluster.remove()
