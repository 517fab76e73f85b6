"""Run one injected daprd as a kubelet would, inside the tier's namespaces: the container's own
arguments and environment from the Pod the injector mutated (secret and field references
resolved as the kubelet resolves them), the Pod's service-account tokens, and the dev overlay's
Redis as `redis`. So the sidecar that deploy/ asks for really starts, gets its certificate
from sentry and its components and configuration from the operator, and serves its API."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from devstack.procs import Proc
from devstack.redis import ensure_redis_server
from devstack.runtime import ensure_runtime
from tests.k8s.cluster import ControlPlane

NAMESPACE = "order-approvals"
REDIS = "127.0.0.3"  # "redis" in the tier's hosts file
# Run inside the namespaces: one HTTP call to the sidecar, its status and body on stdout.
CALL = """
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], headers={"dapr-api-token": sys.argv[2]})
try:
    with urllib.request.urlopen(req, timeout=5) as resp:
        print(resp.status); print(resp.read().decode())
except urllib.error.HTTPError as exc:
    print(exc.code); print(exc.read().decode())
except OSError as exc:
    print(0); print(exc)
"""


class Sidecar:
    """The daprd of one Pod, started by start(), stopped by stop()."""

    def __init__(self, plane: ControlPlane, pod: dict[str, Any], run_dir: Path) -> None:
        self.plane = plane
        self.pod = pod
        self.run_dir = run_dir
        (self.container,) = [c for c in pod["spec"]["containers"] if c["name"] == "daprd"]
        self.env = self._resolve_env()
        self.procs: list[Proc] = []

    def _secret(self, name: str, key: str) -> str:
        data = self.plane.get("secret", name, "-n", NAMESPACE)["data"]
        return base64.b64decode(data[key]).decode()

    def _resolve_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in self.container["env"]:
            source = item.get("valueFrom", {})
            if "value" in item:
                env[item["name"]] = item["value"]
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                env[item["name"]] = self._secret(ref["name"], ref["key"])
            elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env[item["name"]] = self.pod["metadata"]["name"]
            else:
                raise AssertionError(f"the tier cannot resolve {item} as a kubelet would")
        return env

    def _token(self, audience: str | None) -> str:
        account = self.pod["spec"]["serviceAccountName"]
        name = self.pod["metadata"]["name"]
        args = ["create", "token", account, "-n", NAMESPACE, "--bound-object-kind=Pod"]
        args += [f"--bound-object-name={name}", "--duration=1h"]
        args += [f"--audience={audience}"] if audience else []
        return self.plane.kubectl(*args).stdout.strip()

    def _kubeconfig(self) -> Path:
        """The Pod's service account, as its projected token would give it (RBAC applies)."""
        admin = yaml.safe_load(self.plane.kubeconfig.read_text())
        admin["users"] = [{"name": "pod", "user": {"token": self._token(None)}}]
        admin["contexts"][0]["context"]["user"] = "pod"
        path = self.run_dir / "pod.kubeconfig"
        path.write_text(yaml.safe_dump(admin))
        return path

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        redis_conf = self.run_dir / "redis.conf"
        password = self._secret("redis-auth", "password")
        redis_conf.write_text(
            f"bind {REDIS}\nport 6379\nrequirepass {password}\nsave ''\nappendonly no\n"
            f"dir {self.run_dir}\n"
        )
        redis = self.plane.start_inside("redis", [str(ensure_redis_server()), str(redis_conf)])
        self.procs.append(redis)
        token = self.run_dir / "sentry.token"
        token.write_text(self._token("dapr.io/sentry"))
        daprd = str(ensure_runtime().binary("daprd"))
        env = {
            **self.env,
            "DAPR_SENTRY_TOKEN_FILE": str(token),
            "KUBECONFIG": str(self._kubeconfig()),
            # Not in a container here, and as root: daprd refuses that unless told.
            "DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK": "true",
            # The Pod's IP, which a Pod network would give it.
            "DAPR_HOST_IP": "127.0.0.1",
        }
        args = [daprd, *self.container["args"][1:]]
        self.procs.append(self.plane.start_inside("daprd", args, env))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(grace=10)

    def call(self, path: str, token: str | None = None) -> tuple[int, str]:
        """GET the sidecar's HTTP API with the app's token (or `token`); (status, body), status
        0 if nothing answers."""
        url = f"http://127.0.0.1:3500{path}"
        token = self.env["DAPR_API_TOKEN"] if token is None else token
        out = self.plane.inside([sys.executable, "-c", CALL, url, token])
        status, _, body = out.partition("\n")
        return int(status), body.strip()

    def metadata(self) -> dict[str, Any]:
        status, body = self.call("/v1.0/metadata")
        return json.loads(body) if status == 200 else {}
