"""The parts of a multi-app run file (dapr.yaml) that devstack uses, and where a running app
listens."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devstack.errors import DevstackError
from devstack.procs import LOOPBACK


class RunFileError(DevstackError):
    """dapr.yaml is missing a field devstack needs."""


@dataclass(frozen=True)
class AppSpec:
    app_id: str
    app_dir: Path
    command: list[str]
    app_port: int
    http_port: int
    grpc_port: int
    metrics_port: int
    health_path: str
    env: dict[str, str]


@dataclass(frozen=True)
class App:
    """Where one running app and its sidecar listen, and the tokens between them."""

    app_id: str
    app_port: int
    http_port: int
    grpc_port: int
    # The sidecar's internal (sidecar-to-sidecar) gRPC port, on loopback.
    internal_grpc_port: int = 0
    dapr_api_token: str = field(default="", repr=False)
    app_api_token: str = field(default="", repr=False)
    # The app process's name (`orders`, or `orders-2` among replicas); its sidecar's adds -daprd.
    name: str = ""

    @property
    def dapr_headers(self) -> dict[str, str]:
        """What a caller of this app's sidecar must send."""
        return {"dapr-api-token": self.dapr_api_token} if self.dapr_api_token else {}

    @property
    def app_url(self) -> str:
        return f"http://{LOOPBACK}:{self.app_port}"

    @property
    def dapr_url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"


@dataclass
class RunFile:
    """The parts of a multi-app run file (dapr.yaml) that devstack uses."""

    path: Path
    resources_path: Path
    config_path: Path
    placement_port: int
    scheduler_port: int
    log_level: str
    common_env: dict[str, str]
    apps: list[AppSpec]

    @classmethod
    def load(cls, path: Path) -> RunFile:
        doc = yaml.safe_load(path.read_text())
        base = path.parent.resolve()
        common = doc.get("common") or {}

        def need(src: dict[str, Any], key: str, where: str) -> Any:
            if key not in src:
                raise RunFileError(f"{path}: {where} has no `{key}`")
            return src[key]

        def port_of(address: str) -> int:
            return int(str(address).rsplit(":", 1)[1])

        apps = []
        for raw in need(doc, "apps", "the file"):
            merged = {**common, **raw}
            app_id = need(merged, "appID", "an app")
            where = f"app {app_id}"
            apps.append(
                AppSpec(
                    app_id=app_id,
                    app_dir=(base / merged.get("appDirPath", ".")).resolve(),
                    command=[str(c) for c in need(merged, "command", where)],
                    app_port=int(need(merged, "appPort", where)),
                    http_port=int(need(merged, "daprHTTPPort", where)),
                    grpc_port=int(need(merged, "daprGRPCPort", where)),
                    metrics_port=int(need(merged, "metricsPort", where)),
                    health_path=str(merged.get("appHealthCheckPath", "/healthz")),
                    env={k: str(v) for k, v in (raw.get("env") or {}).items()},
                )
            )
        return cls(
            path=path,
            resources_path=(base / need(common, "resourcesPath", "common")).resolve(),
            config_path=(base / need(common, "configFilePath", "common")).resolve(),
            placement_port=port_of(need(common, "placementHostAddress", "common")),
            scheduler_port=port_of(need(common, "schedulerHostAddress", "common")),
            log_level=str(common.get("logLevel", "info")),
            common_env={k: str(v) for k, v in (common.get("env") or {}).items()},
            apps=apps,
        )
