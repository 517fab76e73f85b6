"""The apps of dapr.yaml, each with its daprd sidecar, in as many replicas as asked for.

A replica is its own app process and its own sidecar with the same app id: the replicas of an
app share placement (the workflow actors are spread over their sidecars, and move to a survivor
when one dies), the scheduler, and the pub/sub's consumer group (the group is the app id, so
each message goes to one replica). They share the app's tokens, as the pods of one Deployment
share its secrets. With one replica the processes are named after the app (`orders`,
`orders-daprd`); with more, `orders-1`, `orders-1-daprd`, `orders-2`, ... The first replica
listens on dapr.yaml's ports (unless --free-ports), the others on free ones.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from devstack.errors import DevstackError
from devstack.identity import CONTROL_PLANE_TRUST_DOMAIN, NAMESPACE
from devstack.keys import write_tokens
from devstack.log import say
from devstack.procs import LOOPBACK, READY_TIMEOUT, Proc, http_ok
from devstack.runfile import App, AppSpec, RunFile
from devstack.runtime import Runtime

if TYPE_CHECKING:
    from devstack.stack import Stack


class BadReplicas(DevstackError):
    """A replica count that names no app of the run file, or is not a positive number."""


def parse_replicas(text: str, app_ids: list[str]) -> dict[str, int]:
    """`orders=2,approvals=2` (or `2`: every app) as {app id: count}."""
    counts: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        app, sep, count = part.rpartition("=")
        targets = [app] if sep else app_ids
        if sep and app not in app_ids:
            known = ", ".join(app_ids)
            raise BadReplicas(f"--replicas {text}: no app {app!r}; the apps are {known}")
        if not count.isdigit() or int(count) < 1:
            raise BadReplicas(f"--replicas {text}: {count!r} is no number of replicas (1 or more)")
        counts.update(dict.fromkeys(targets, int(count)))
    return counts


@dataclass(frozen=True)
class Wiring:
    """What every sidecar is pointed at: the control plane and the rendered resources."""

    placement: int
    scheduler: int
    resources: Path
    config: Path


def replica_names(app_id: str, count: int) -> list[str]:
    """The process names of an app's replicas (each sidecar's is `<name>-daprd`)."""
    return [app_id] if count == 1 else [f"{app_id}-{i}" for i in range(1, count + 1)]


def start_apps(stack: Stack, rt: Runtime, spec: RunFile, wiring: Wiring) -> None:
    """Start every replica of every app with its sidecar, then wait until all are ready."""
    pending: list[tuple[Proc, Proc, App]] = []
    for app in spec.apps:
        tokens = {
            "APP_API_TOKEN": secrets.token_urlsafe(32),
            "DAPR_API_TOKEN": secrets.token_urlsafe(32),
        }
        for index, name in enumerate(stack.replica_names(app.app_id)):
            port = partial(_port, stack, index == 0, app.app_id)
            ports = App(
                app.app_id,
                port(app.app_port, "app"),
                port(app.http_port, "sidecar HTTP"),
                port(app.grpc_port, "sidecar gRPC"),
                internal_grpc_port=stack._free(),
                dapr_api_token=tokens["DAPR_API_TOKEN"],
                app_api_token=tokens["APP_API_TOKEN"],
                name=name,
            )
            metrics = port(app.metrics_port, "sidecar metrics")
            if index == 0:  # the apps after it learn where it is (notifier links to approvals)
                stack.env.setdefault(f"{app.app_id.upper()}_URL", ports.app_url)
            daprd = _start_sidecar(stack, rt, spec, app, ports, metrics, wiring)
            command = [sys.executable if c == "python" else c for c in app.command]
            app_env = {
                **spec.common_env,
                **app.env,
                **stack.env,
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
            proc = stack._spawn(name, command, app_env, cwd=app.app_dir, probe=readyz)
            pending.append((proc, daprd, ports))
    for proc, daprd, ports in pending:
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
        stack.app_replicas.setdefault(ports.app_id, []).append(ports)
        stack.apps.setdefault(ports.app_id, ports)
        write_tokens(stack.run_dir, stack.apps.values())
        say(
            f"{ports.name}: app {ports.app_url} (pid {proc.pid}); sidecar HTTP "
            f"{ports.dapr_url}, gRPC {LOOPBACK}:{ports.grpc_port} (pid {daprd.pid})"
        )


def _port(stack: Stack, first: bool, app_id: str, configured: int, what: str) -> int:
    """dapr.yaml's port for an app's first replica, a free one for the others."""
    return stack._port(configured, f"{app_id} {what}") if first else stack._free()


def _start_sidecar(
    stack: Stack, rt: Runtime, spec: RunFile, app: AppSpec, ports: App, metrics: int, w: Wiring
) -> Proc:
    tokens = {"APP_API_TOKEN": ports.app_api_token, "DAPR_API_TOKEN": ports.dapr_api_token}
    env = {**spec.common_env, **stack.env, **tokens, "DAPR_HOST_IP": LOOPBACK}
    mtls: list[str] = []
    if stack.identity is not None:
        env |= stack.identity.env(app.app_id)
        env["DAPR_TRUST_ANCHORS"] = stack.identity.trust_anchors
        mtls = [
            "--enable-mtls",
            "--sentry-address",
            f"{LOOPBACK}:{stack.sentry_port}",
            "--control-plane-trust-domain",
            CONTROL_PLANE_TRUST_DOMAIN,
            "--control-plane-namespace",
            NAMESPACE,
        ]
    return stack._spawn(
        f"{ports.name}-daprd",
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
            f"{LOOPBACK}:{w.placement}",
            "--scheduler-host-address",
            f"{LOOPBACK}:{w.scheduler}",
            "--resources-path",
            str(w.resources),
            "--config",
            str(w.config),
            "--log-level",
            spec.log_level,
            "--enable-app-health-check",
            "--app-health-check-path",
            app.health_path,
            "--app-health-probe-interval",
            "2",
            *mtls,
        ],
        env,
        cwd=stack.run_dir,
        probe=partial(http_ok, f"{ports.dapr_url}/v1.0/healthz"),
    )
