"""The local stack: redis-server, sentry, placement, scheduler, and each app of dapr.yaml with
its daprd, in one replica or more (devstack.apps).

Everything listens on 127.0.0.1 (but the control plane's health ports: docs/operations.md). The
Dapr processes talk mTLS with certificates from the stack's own sentry (devstack.identity).
Every stack makes its own secrets: a Redis password, and per app an APP_API_TOKEN (sidecar ->
app) and a DAPR_API_TOKEN (app -> sidecar), so no other process on the machine can publish
through a sidecar or call an app's subscription routes. They are written to
<run dir>/tokens.env (mode 600) for a person who wants to publish by hand.

The Dapr resources in components/ are rendered into the run directory with the stack's actual
Redis address and password and a SQLite name-resolution database, so the sidecars never use
mDNS (which multicasts on the LAN).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from devstack import postgres
from devstack.apps import Wiring, replica_names, start_apps
from devstack.control import in_background
from devstack.control_plane import start_placement_and_scheduler, start_sentry
from devstack.errors import DevstackError
from devstack.identity import Identity
from devstack.jaeger import Tracing, start_tracing
from devstack.keys import StackSecrets, write_private
from devstack.log import say
from devstack.procs import (
    LOOPBACK,
    READY_TIMEOUT,
    Proc,
    ensure_port_free,
    free_port,
    redis_ping,
)
from devstack.redis import ensure_redis_server
from devstack.render import render_resources
from devstack.runfile import App, RunFile
from devstack.runtime import Runtime, ensure_runtime
from devstack.supervisor import Supervisor

DEFAULT_REDIS_PORT = 6380
DEFAULT_POSTGRES_PORT = 5433
STATE_STORES = ("redis", "postgres")


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
    # Replicas per app id (1 for an app not named): each its own app process and sidecar.
    replicas: dict[str, int] = field(default_factory=dict)
    # mTLS between the Dapr processes, with a sentry of the stack's own. Replicas need it (the
    # workflow access policy admits a call between two sidecars only by its mTLS identity);
    # off only to measure what it costs.
    mtls: bool = True
    own_secrets: StackSecrets = field(default_factory=StackSecrets, repr=False)
    # Each app's first replica (the one at dapr.yaml's ports), and every replica of each app.
    apps: dict[str, App] = field(default_factory=dict)
    app_replicas: dict[str, list[App]] = field(default_factory=dict)
    identity: Identity | None = field(default=None, repr=False)
    sentry_port: int = 0
    procs: list[Proc] = field(default_factory=list)
    supervisor: Supervisor = field(default_factory=Supervisor)
    _given: set[int] = field(default_factory=set, repr=False)
    postgres_cluster: postgres.Cluster | None = field(default=None, repr=False)
    _unsupervise: Callable[[], None] | None = field(default=None, repr=False)
    tracing: Tracing | None = None  # where spans go (devstack.jaeger); None: tracing is off

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
        proc = Proc(name, args, self.log_of(name), env or {}, cwd, probe=probe).start()
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
        self._check_replicas(spec)
        self.apps.clear()
        self.app_replicas.clear()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o700)  # tokens, keys and the Redis password live here
        try:
            rt = self.runtime or ensure_runtime()
            self.runtime = rt
            say(f"runtime: Dapr {rt.version} ({rt.source}) from {rt.bin_dir}")
            self._start_redis()
            if self.state_store == "postgres":
                self._start_postgres()
            if self.mtls:
                start_sentry(self, rt)
            placement, scheduler = start_placement_and_scheduler(self, rt, spec)
            resources, config = render_resources(self, spec)
            self.tracing = start_tracing(self, config)
            start_apps(self, rt, spec, Wiring(placement, scheduler, resources, config))
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

    def _check_replicas(self, spec: RunFile) -> None:
        ids = [a.app_id for a in spec.apps]
        if unknown := sorted(set(self.replicas) - set(ids)):
            raise DevstackError(f"replicas of {', '.join(unknown)}: the apps are {', '.join(ids)}")
        if any(n < 1 for n in self.replicas.values()):
            raise DevstackError(f"replicas {self.replicas}: every app needs at least one")
        if not self.mtls and any(n > 1 for n in self.replicas.values()):
            raise DevstackError(
                "replicas need mTLS: the workflow access policy refuses calls between sidecars "
                "that cannot prove their app id, even two replicas of one app"
            )

    def replica_names(self, app_id: str) -> list[str]:
        """The process names of an app's replicas: [`orders`], or [`orders-1`, `orders-2`]."""
        return replica_names(app_id, self.replicas.get(app_id, 1))

    def app_named(self, name: str) -> App | None:
        """The running app (replica) whose process is `name`, if `name` is an app's."""
        return next((a for r in self.app_replicas.values() for a in r if a.name == name), None)

    def log_of(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    def restart(self, name: str, crash: bool = True) -> None:
        """Kill one process (SIGKILL when `crash`) and start it again with the same arguments,
        at once (a restart asked for, not a crash); for an app, wait until it is ready again."""
        proc = self.supervisor.watch(name).proc
        self.supervisor.call(lambda: self.supervisor.restart(name, crash=crash))
        if app := self.app_named(name):
            proc.wait_ready(proc.ready, f"ready at {app.app_url}/readyz", READY_TIMEOUT)
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
