"""Traces for a local stack: Jaeger v2 as the trace backend (the default), another OTLP
endpoint, or none.

  (default)               Jaeger v2 on 127.0.0.1: OTLP in, traces kept in memory, the UI and
                          query API on JAEGER_UI_PORT (16686)
  OTLP_ENDPOINT=host:port send to that OTLP/gRPC endpoint instead (OTLP_INSECURE=false for TLS)
  DEVSTACK_TRACING=off    no traces at all (the sidecars' samplingRate stays "0")

Each sidecar's Configuration gets an `otel` exporter and samplingRate "1"; each app gets
OTEL_EXPORTER_OTLP_ENDPOINT (plumbing.tracing).

Jaeger is built once from its Go module, cached by version, run with a config that binds
only 127.0.0.1 and keeps traces in memory.

Order of preference: a previous build in the cache (~/.cache/order-approvals/jaeger/<version>),
else a build of ./cmd/jaeger from the Go module github.com/jaegertracing/jaeger (a few minutes,
once). The module has a replace directive, so it builds from a writable copy, like daprd. A
lock file keeps two runs (two test sessions, `make run` and a test) from building it twice.

Errors: RuntimeUnavailable (from devstack.runtime) with a one-line, actionable message.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from devstack.errors import DevstackError
from devstack.log import say
from devstack.procs import LOOPBACK, http_ok
from devstack.runtime import (
    RuntimeUnavailable,
    _go_env,
    _go_version,
    _run_go,
    cache_root,
    module_copy,
)

if TYPE_CHECKING:
    from devstack.stack import Stack

# Jaeger 2.13.0: the v2 binary is published under the module's v1 version numbers.
PINNED_VERSION = "1.76.0"
MODULE = "github.com/jaegertracing/jaeger"
MARKER = ".complete.json"


@dataclass(frozen=True)
class Ports:
    """Where a running Jaeger listens; every address is on 127.0.0.1."""

    otlp_grpc: int
    otlp_http: int
    query_http: int
    query_grpc: int
    health: int
    metrics: int

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.query_http}"

    @property
    def otlp_grpc_address(self) -> str:
        return f"127.0.0.1:{self.otlp_grpc}"


def jaeger_dir(version: str) -> Path:
    return cache_root() / "jaeger" / version


def cached_binary(version: str = PINNED_VERSION) -> Path | None:
    """The cached binary of this version, or None when it was never (completely) built."""
    d = jaeger_dir(version)
    return d / "jaeger" if (d / MARKER).is_file() and (d / "jaeger").is_file() else None


def ensure_jaeger(version: str = PINNED_VERSION) -> Path:
    """Return the path of the jaeger binary, building it (minutes, once) when not cached."""
    found = cached_binary(version)
    if found:
        return found
    if not shutil.which("go"):
        raise RuntimeUnavailable(
            f"Jaeger {version} is not built yet and Go is not installed: install Go "
            "(https://go.dev/doc/install), or run without Jaeger (DEVSTACK_TRACING=off), or "
            "send traces elsewhere (OTLP_ENDPOINT=host:port)"
        )
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / f"jaeger-{version}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"jaeger: another process is building Jaeger {version}; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        return cached_binary(version) or _build(version)


def _build(version: str) -> Path:
    final = jaeger_dir(version)
    say(
        f"jaeger: building Jaeger v2 ({MODULE} v{version}) from Go modules; this takes "
        f"several minutes the first time and is cached in {final}"
    )
    for stale in cache_root().glob("building-jaeger-*"):  # left by an interrupted build
        shutil.rmtree(stale, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"building-jaeger-{version}-", dir=cache_root()))
    try:
        # The checksum database may be unreachable: skipped for the top-level module only.
        src = module_copy(MODULE, version, scratch / "src", _go_env(GONOSUMDB=MODULE))
        out = scratch / "out"
        out.mkdir()
        ldflags = f"-s -w -X {MODULE}/internal/version.latestVersion=v{version}"
        say(f"jaeger: compiling ./cmd/jaeger {version}")
        flags = ["-v", "-trimpath", "-ldflags", ldflags, "-o", str(out / "jaeger")]
        _run_go(
            ["go", "build", *flags, "./cmd/jaeger"],
            cwd=src,
            env=_go_env(),
            label="go build jaeger",
        )
        (out / MARKER).write_text(json.dumps({"version": version, "go": _go_version()}) + "\n")
        if final.exists():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        out.rename(final)
        say(f"jaeger: Jaeger {version} ready in {final}")
        return final / "jaeger"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def config(ports: Ports) -> str:
    """A Jaeger v2 config: OTLP in, memory storage, query UI and API, all on 127.0.0.1."""
    host = "127.0.0.1"
    doc = {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {
                "resource": {"service.name": "jaeger"},
                "metrics": {
                    "level": "basic",
                    "readers": [
                        {
                            "pull": {
                                "exporter": {"prometheus": {"host": host, "port": ports.metrics}}
                            }
                        }
                    ],
                },
                "logs": {"level": "warn"},
            },
        },
        "extensions": {
            "jaeger_query": {
                "storage": {"traces": "memstore"},
                "http": {"endpoint": f"{host}:{ports.query_http}"},
                "grpc": {"endpoint": f"{host}:{ports.query_grpc}"},
            },
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 100000}}}},
            "healthcheckv2": {
                "use_v2": True,
                "http": {
                    "endpoint": f"{host}:{ports.health}",
                    "status": {"enabled": True, "path": "/status"},
                },
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"{host}:{ports.otlp_grpc}"},
                    "http": {"endpoint": f"{host}:{ports.otlp_http}"},
                }
            }
        },
        # A short timeout: a trace shows in the UI within a second of its last span.
        "processors": {"batch": {"timeout": "200ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }
    # JSON is YAML: no YAML writer needed.
    return json.dumps(doc, indent=2) + "\n"


@dataclass(frozen=True)
class Tracing:
    """Where a stack's spans go; `ui_url` when it runs its own Jaeger."""

    endpoint: str  # host:port, OTLP over gRPC
    insecure: bool
    ui_url: str | None = None


def start_tracing(stack: Stack, config_path: Path) -> Tracing | None:
    """Start Jaeger (unless told otherwise), point the sidecars' Configuration and the apps'
    environment at it; None when tracing is off."""
    if os.environ.get("DEVSTACK_TRACING", "on").lower() in ("off", "0", "false", "no"):
        say("tracing: off (DEVSTACK_TRACING=off)")
        return None
    endpoint = os.environ.get("OTLP_ENDPOINT", "")
    if endpoint:
        tracing = Tracing(endpoint, os.environ.get("OTLP_INSECURE", "true").lower() == "true")
        say(f"tracing: sending spans to {endpoint} (OTLP_ENDPOINT)")
    else:
        tracing = _start_jaeger(stack)
    _point_at(tracing, stack, config_path)
    return tracing


def _start_jaeger(stack: Stack) -> Tracing:
    binary = ensure_jaeger()
    ports = Ports(
        otlp_grpc=stack._port(int(os.environ.get("JAEGER_OTLP_PORT", "4317")), "jaeger OTLP"),
        otlp_http=stack._free(),
        query_http=stack._port(int(os.environ.get("JAEGER_UI_PORT", "16686")), "jaeger UI"),
        query_grpc=stack._free(),
        health=stack._free(),
        metrics=stack._free(),
    )
    conf = stack.run_dir / "jaeger.yaml"
    conf.write_text(config(ports))
    ready = partial(http_ok, f"http://{LOOPBACK}:{ports.health}/status")
    # Jaeger's own spans would go to the OTLP default (localhost:4317): it keeps none.
    quiet = {"OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"}
    proc = stack._spawn("jaeger", [str(binary), "--config", str(conf)], quiet, probe=ready)
    proc.wait_ready(ready, f"healthy at {LOOPBACK}:{ports.health}", 30)
    say(f"jaeger: UI {ports.ui_url}, OTLP {ports.otlp_grpc_address} (pid {proc.pid})")
    return Tracing(ports.otlp_grpc_address, insecure=True, ui_url=ports.ui_url)


def _point_at(tracing: Tracing, stack: Stack, config_path: Path) -> None:
    conf = yaml.safe_load(config_path.read_text())
    conf["spec"]["tracing"] = {
        "samplingRate": "1",
        "otel": {
            "endpointAddress": tracing.endpoint,
            "isSecure": not tracing.insecure,
            "protocol": "grpc",
        },
    }
    config_path.write_text(yaml.safe_dump(conf, sort_keys=False))
    scheme = "http" if tracing.insecure else "https"
    stack.env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"{scheme}://{tracing.endpoint}",
            "OTEL_EXPORTER_OTLP_INSECURE": str(tracing.insecure).lower(),
            # Spans leave every half second (the SDK's default is 5 s): the UI is current.
            "OTEL_BSP_SCHEDULE_DELAY": "500",
        }
    )
    if tracing.ui_url:  # the console links each instance to its trace there
        stack.env["TRACES_URL"] = tracing.ui_url


def main_jaeger(version: str | None) -> int:
    """`devstack jaeger`: make sure Jaeger is built and say where."""
    try:
        path = ensure_jaeger(version or PINNED_VERSION)
    except DevstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    say(f"jaeger: {path}")
    print(path)
    return 0
