"""The Dapr control plane of the local stack: sentry (with mTLS), placement and scheduler.

With mTLS (the default) sentry starts first, with this stack's CA and the jwks validator
(devstack.identity); placement and scheduler then serve TLS with certificates from it, as
every sidecar must reach them once it uses mTLS itself. Every listener binds 127.0.0.1 except
the health servers of all three, which Dapr 1.18 binds on every interface whatever
--healthz-listen-address says (docs/operations.md, "Loopback only"). Sentry's metrics server
ignores --metrics-listen-address too, so it is off (--enable-metrics=false).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from devstack.identity import CONTROL_PLANE_TRUST_DOMAIN, Identity
from devstack.log import say
from devstack.procs import LOOPBACK, READY_TIMEOUT, http_ok
from devstack.runfile import RunFile
from devstack.runtime import Runtime

if TYPE_CHECKING:
    from devstack.stack import Stack

COMMON = ["--metrics-listen-address", LOOPBACK, "--log-level", "info"]


def start_sentry(stack: Stack, rt: Runtime) -> None:
    """Make the stack's CA and tokens, start sentry on loopback, wait until it is healthy."""
    stack.identity = identity = Identity(stack.run_dir / "mtls").make()
    stack.sentry_port = stack._free()
    health = stack._free()
    url = f"http://{LOOPBACK}:{health}/healthz"
    proc = stack._spawn(
        "sentry",
        [
            str(rt.binary("sentry")),
            "--mode",
            "standalone",
            "--config",
            str(identity.sentry_config),
            "--issuer-credentials",
            str(identity.credentials),
            "--trust-domain",
            CONTROL_PLANE_TRUST_DOMAIN,
            "--port",
            str(stack.sentry_port),
            "--listen-address",
            LOOPBACK,
            "--healthz-port",
            str(health),
            "--healthz-listen-address",  # ignored by Dapr 1.18: see docs/operations.md
            LOOPBACK,
            "--enable-metrics=false",  # its metrics server would listen on every interface
            "--log-level",
            "info",
        ],
        {"DAPR_HOST_IP": LOOPBACK, **identity.env("dapr-sentry")},
        probe=partial(http_ok, url),
    )
    proc.wait_ready(partial(http_ok, url), f"healthy at {url}", READY_TIMEOUT)
    say(f"sentry: {LOOPBACK}:{stack.sentry_port} (pid {proc.pid}), the stack's mTLS authority")


def _tls(stack: Stack, identity_name: str) -> tuple[list[str], dict[str, str]]:
    """The flags and environment a control plane service needs to serve mTLS."""
    if stack.identity is None:
        return [], {}
    flags = [
        "--tls-enabled",
        "--trust-anchors-file",
        str(stack.identity.trust_anchors_file),
        "--sentry-address",
        f"{LOOPBACK}:{stack.sentry_port}",
        "--trust-domain",
        CONTROL_PLANE_TRUST_DOMAIN,
    ]
    return flags, stack.identity.env(identity_name)


def start_placement_and_scheduler(stack: Stack, rt: Runtime, spec: RunFile) -> tuple[int, int]:
    placement = stack._port(spec.placement_port, "placement")
    scheduler = stack._port(spec.scheduler_port, "scheduler")
    p_health, s_health = stack._free(), stack._free()
    host_env = {"DAPR_HOST_IP": LOOPBACK}
    p_tls, p_env = _tls(stack, "dapr-placement")
    pproc = stack._spawn(
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
            str(stack._free()),
            "--initial-cluster",
            f"dapr-placement-0={LOOPBACK}:{stack._free()}",
            *p_tls,
            *COMMON,
        ],
        {**host_env, **p_env},
        probe=partial(http_ok, f"http://{LOOPBACK}:{p_health}/healthz"),
    )
    s_tls, s_env = _tls(stack, "dapr-scheduler")
    if s_tls:  # where it writes its certificate (the default is shared: /tmp/secrets/...)
        s_tls += ["--identity-directory-write", str(stack.run_dir / "mtls" / "scheduler")]
    sproc = stack._spawn(
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
            str(stack._free()),
            "--override-broadcast-host-port",
            f"{LOOPBACK}:{scheduler}",
            "--etcd-data-dir",
            str(stack.run_dir / "scheduler-etcd"),
            "--etcd-client-port",
            str(stack._free()),
            "--etcd-client-listen-address",
            LOOPBACK,
            "--etcd-initial-cluster",
            f"dapr-scheduler-server-0=http://{LOOPBACK}:{stack._free()}",
            "--id",
            "dapr-scheduler-server-0",
            *s_tls,
            *COMMON,
        ],
        {**host_env, **s_env},
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
