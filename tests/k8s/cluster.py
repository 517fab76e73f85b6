"""A real Kubernetes control plane with Dapr's control plane, for the k8s tier.

etcd, kube-apiserver and kube-controller-manager (the controllers that turn Deployments into
ReplicaSets and Pods, scale them by their HorizontalPodAutoscaler, watch PodDisruptionBudgets
and clean up namespaces), then Dapr's CRDs, sentry, sidecar injector and operator, set up as
Dapr's Helm chart sets them up. There is no kubelet, scheduler or kube-proxy: Pods are
created, mutated by the injector and admitted, and stay Pending.

Every process runs in one network and mount namespace of the tier's own (`unshare`), whose
only interface is a loopback of its own: the Dapr services' health ports and the injector's
webhook bind all interfaces whatever their flags say (a Dapr bug), and here "all" is that
private loopback, so nothing listens on the machine. The private mount namespace gets its own
/etc/hosts (HOSTS), where the service names the control plane and a sidecar dial (the
injector's, which is the name in the certificate sentry gives it; sentry's; the operator's API;
the dev overlay's Redis) are loopback addresses; the machine's /etc/hosts is not touched.
kubectl reaches the API server by entering the same namespaces (`nsenter`).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from devstack.kube import KubeParts
from devstack.procs import LOOPBACK, Proc
from tests.k8s.dapr_system import (
    DAPR_NS,
    INJECTOR_HOST,
    SENTRY_ADDRESS,
    TRUST_DOMAIN,
    dapr_system,
)
from tests.k8s.pki import Pki, make_pki

# Inside the private namespace every port is free: fixed ones keep the logs readable.
PORTS = {"etcd": 2379, "etcd-peer": 2380, "apiserver": 6443, "controller-manager": 10257}
PORTS |= {"sentry": 443, "sentry-health": 8081, "injector": 4000, "injector-health": 8082}
PORTS |= {"operator": 443, "operator-health": 8083, "operator-webhook": 19443}
# The names the control plane and a sidecar dial, as a cluster's DNS would answer them: sentry
# and the operator's API both listen on 443, as their Services do, so each has an address.
OPERATOR_HOST = f"dapr-api.{DAPR_NS}.svc.cluster.local"
HOSTS = {
    LOOPBACK: [INJECTOR_HOST, SENTRY_ADDRESS.split(":")[0]],
    "127.0.0.2": [OPERATOR_HOST],
    "127.0.0.3": ["redis"],  # the dev overlay's Redis Service (tests/k8s/sidecar.py)
}
NO_PROXY = {"NO_PROXY": f"{LOOPBACK},localhost,.svc", "no_proxy": f"{LOOPBACK},localhost,.svc"}
CONTROLLERS = [
    "deployment-controller",
    "replicaset-controller",
    "horizontal-pod-autoscaler-controller",
    "disruption-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "garbage-collector-controller",
]
# The namespaces' first process: brings the private loopback up, mounts the private hosts
# file, says so, and waits to be stopped (it holds the namespaces while the others come and go).
HOLDER = """
import fcntl, signal, socket, struct, subprocess, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sH", fcntl.ioctl(sock, 0x8913, struct.pack("16sH14x", b"lo", 0))[:18])[1]
fcntl.ioctl(sock, 0x8914, struct.pack("16sH14x", b"lo", flags | 0x1))
subprocess.run(["mount", "--bind", sys.argv[1], "/etc/hosts"], check=True)
print("namespaces ready", flush=True)
signal.pause()
"""


class ControlPlane:
    """Start with start(), stop with stop(); logs and PKI stay in run_dir."""

    def __init__(self, parts: KubeParts, run_dir: Path) -> None:
        self.parts = parts
        self.run_dir = run_dir
        self.procs: list[Proc] = []
        self.pki: Pki = make_pki(run_dir / "pki")
        self.kubeconfig = run_dir / "admin.kubeconfig"
        self.enter: list[str] = []  # the nsenter prefix, once the namespaces exist

    # -- clients -------------------------------------------------------------------------

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [*self.enter, str(self.parts.binary("kubectl")), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **NO_PROXY, "KUBECONFIG": str(self.kubeconfig)},
            check=False,
        )
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{out.stderr}{out.stdout}")
        return out

    def get(self, *args: str) -> dict[str, Any]:
        """`kubectl get ... -o json`, parsed."""
        result: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return result

    def apply_docs(self, docs: list[dict[str, Any]]) -> None:
        self.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def inside(self, args: list[str]) -> str:
        """Run a short command in the tier's namespaces; its stdout."""
        out = subprocess.run(
            [*self.enter, *args], capture_output=True, text=True, timeout=60, check=False
        )
        return out.stdout

    def start_inside(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        """Start a process in the tier's namespaces, stopped with the control plane."""
        return self._start(name, args, env)

    def _api_ok(self, path: str) -> bool:
        return self.kubectl("get", "--raw", path, check=False).returncode == 0

    # -- processes -----------------------------------------------------------------------

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.run_dir / "logs" / f"{name}.log"
        proc = Proc(name, [*self.enter, *args], log, env={**NO_PROXY, **(env or {})})
        self.procs.append(proc.start())
        return proc

    def _run(self, binary: str, flags: list[str], env: dict[str, str] | None = None) -> Proc:
        """Start one of the built parts (KubeParts) with these flags."""
        return self._start(binary, [str(self.parts.binary(binary)), *flags], env)

    def start(self) -> None:
        self._enter_namespaces()
        etcd = self._start_etcd()
        api = self._start_apiserver()
        self._write_kubeconfig()
        api.wait_ready(lambda: self._api_ok("/readyz"), "ready", 120, companions=(etcd,))
        kcm = self._start_controller_manager()
        # Its service-account controller gives every namespace a "default" account.
        kcm.wait_ready(
            lambda: self._api_ok("/api/v1/namespaces/default/serviceaccounts/default"),
            "running its controllers",
            90,
        )
        self.kubectl("apply", "--server-side", "-f", str(self.parts.crds))
        self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        # The webhook last: its failurePolicy is Fail, so it would refuse the control plane's
        # own Pod objects while no injector answers.
        docs = dapr_system(PORTS["injector"], self.parts.dapr_version)
        webhook = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
        self.apply_docs([d for d in docs if d not in webhook])
        sentry = self._start_sentry()
        sentry.wait_ready(self._trust_anchors_published, "publishing its trust anchors", 90)
        anchors = self.run_dir / "dapr" / "ca.crt"
        bundle = self.get("configmap", "dapr-trust-bundle", "-n", DAPR_NS)["data"]["ca.crt"]
        anchors.write_text(bundle)
        self.apply_docs(webhook)
        injector = self._start_injector(anchors)
        operator = self._start_operator(anchors)
        injector.wait_ready(self._injects, "injecting sidecars", 90, companions=(sentry,))
        operator.wait_ready(
            self._conversion_trusts_operator, "serving its webhook", 90, companions=(sentry,)
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(grace=10)

    def _enter_namespaces(self) -> None:
        missing = [t for t in ("unshare", "nsenter", "mount") if shutil.which(t) is None]
        if missing:
            raise RuntimeError(
                f"the k8s tier needs {', '.join(missing)} (util-linux: `apt-get install "
                "util-linux mount`) to give its control plane namespaces of its own"
            )
        hosts = self.run_dir / "hosts"
        machine = Path("/etc/hosts").read_text() if Path("/etc/hosts").is_file() else ""
        ours = "".join(f"{ip} {' '.join(names)}\n" for ip, names in HOSTS.items())
        hosts.write_text(f"{machine.rstrip()}\n{ours}")
        user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
        unshare = ["unshare", *user, "--net", "--mount", "--propagation", "private"]
        holder = self._start("namespaces", [*unshare, sys.executable, "-c", HOLDER, str(hosts)])
        holder.wait_ready(lambda: "namespaces ready" in holder.tail(), "holding them", 30)
        keep = [] if os.geteuid() == 0 else ["--user", "--preserve-credentials"]
        self.enter = ["nsenter", f"--target={holder.pid}", *keep, "--net", "--mount"]

    def _start_etcd(self) -> Proc:
        client = f"http://{LOOPBACK}:{PORTS['etcd']}"
        peer = f"http://{LOOPBACK}:{PORTS['etcd-peer']}"
        return self._run(
            "etcd",
            [
                "--name=tier",
                f"--data-dir={self.run_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=tier={peer}",
                "--log-level=warn",
            ],
        )

    def _start_apiserver(self) -> Proc:
        issuer = "https://kubernetes.default.svc.cluster.local"
        pki = self.pki
        return self._run(
            "kube-apiserver",
            [
                f"--etcd-servers=http://{LOOPBACK}:{PORTS['etcd']}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={PORTS['apiserver']}",
                f"--tls-cert-file={pki.server_cert}",
                f"--tls-private-key-file={pki.server_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--service-account-issuer={issuer}",
                f"--api-audiences={issuer}",
                f"--service-account-key-file={pki.sa_public}",
                f"--service-account-signing-key-file={pki.sa_private}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
            ],
        )

    def _write_kubeconfig(self) -> None:
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        cluster = {
            "server": f"https://{LOOPBACK}:{PORTS['apiserver']}",
            "certificate-authority-data": b64(self.pki.ca_cert),
        }
        user = {
            "client-certificate-data": b64(self.pki.admin_cert),
            "client-key-data": b64(self.pki.admin_key),
        }
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "tier", "cluster": cluster}],
            "users": [{"name": "admin", "user": user}],
            "contexts": [{"name": "tier", "context": {"cluster": "tier", "user": "admin"}}],
            "current-context": "tier",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _start_controller_manager(self) -> Proc:
        kubeconfig = str(self.kubeconfig)
        return self._run(
            "kube-controller-manager",
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={PORTS['controller-manager']}",
                f"--cert-dir={self.run_dir / 'controller-manager'}",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={self.pki.sa_private}",
                f"--root-ca-file={self.pki.ca_cert}",
                "--leader-elect=false",
                # How often an HPA is reconciled: it scales a Deployment up to minReplicas.
                "--horizontal-pod-autoscaler-sync-period=2s",
            ],
        )

    def _dapr_flags(self, service: str, address: str = LOOPBACK) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--listen-address={address}",
            f"--port={PORTS[service]}",
            f"--healthz-listen-address={LOOPBACK}",
            f"--healthz-port={PORTS[f'{service}-health']}",
            "--enable-metrics=false",
        ]

    def _dapr_env(self) -> dict[str, str]:
        return {
            "NAMESPACE": DAPR_NS,
            "KUBECONFIG": str(self.kubeconfig),
            # They run as root here, not in a container; both refuse that unless told.
            "DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK": "true",
        }

    def _start_sentry(self) -> Proc:
        credentials = self.run_dir / "dapr" / "credentials"
        credentials.mkdir(parents=True, exist_ok=True)
        return self._run(
            "sentry",
            [
                "--mode=kubernetes",
                "--config=daprsystem",
                f"--trust-domain={TRUST_DOMAIN}",
                f"--issuer-credentials={credentials}",
                *self._dapr_flags("sentry"),
            ],
            self._dapr_env(),
        )

    def _trust_anchors_published(self) -> bool:
        out = self.kubectl("get", "configmap", "dapr-trust-bundle", "-n", DAPR_NS, "-o", "json")
        return "BEGIN CERTIFICATE" in json.loads(out.stdout).get("data", {}).get("ca.crt", "")

    def _sentry_token(self, service: str) -> Path:
        """A token for sentry, bound to the service's Pod object (as Helm's projected one)."""
        token = self.run_dir / "dapr" / f"{service}.token"
        token.write_text(
            self.kubectl(
                "create",
                "token",
                f"dapr-{service}",
                "-n",
                DAPR_NS,
                "--audience=dapr.io/sentry",
                "--bound-object-kind=Pod",
                f"--bound-object-name=dapr-{service}",
                "--duration=2h",
            ).stdout.strip()
        )
        return token

    def _start_injector(self, anchors: Path) -> Proc:
        env = {
            **self._dapr_env(),
            "SIDECAR_IMAGE": f"ghcr.io/dapr/daprd:{self.parts.dapr_version}",
            "DAPR_TRUST_ANCHORS_FILE": str(anchors),
            "DAPR_CONTROL_PLANE_TRUST_DOMAIN": TRUST_DOMAIN,
            "DAPR_SENTRY_ADDRESS": SENTRY_ADDRESS,
            "DAPR_SENTRY_TOKEN_FILE": str(self._sentry_token("injector")),
            "KUBE_CLUSTER_DOMAIN": "cluster.local",
            # What docs/operations.md tells Helm users to set:
            # dapr_sidecar_injector.sidecarDropALLCapabilities=true.
            "SIDECAR_DROP_ALL_CAPABILITIES": "true",
            "ACTORS_ENABLED": "true",
            "ACTORS_SERVICE_NAME": "placement",
            "ACTORS_SERVICE_ADDRESS": "dapr-placement-server:50005",
        }
        return self._run("injector", self._dapr_flags("injector"), env)

    def _start_operator(self, anchors: Path) -> Proc:
        # It reads sentry's address from the daprsystem Configuration.
        env = {**self._dapr_env(), "DAPR_SENTRY_TOKEN_FILE": str(self._sentry_token("operator"))}
        flags = [
            *self._dapr_flags("operator", "127.0.0.2"),
            "--config=daprsystem",
            f"--trust-anchors-file={anchors}",
            "--disable-leader-election",
            f"--webhook-server-listen-address={LOOPBACK}",
            f"--webhook-server-port={PORTS['operator-webhook']}",
        ]
        return self._run("operator", flags, env)

    def _conversion_trusts_operator(self) -> bool:
        """The operator put its CA into the Subscription CRD's conversion webhook."""
        crd = self.get("crd", "subscriptions.dapr.io")
        hook = crd["spec"].get("conversion", {}).get("webhook", {})
        return bool(hook.get("clientConfig", {}).get("caBundle"))

    def _injects(self) -> bool:
        """A Pod asking for a sidecar gets one (a server-side dry run: nothing is stored)."""
        probe = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "injector-probe",
                "namespace": "default",
                "annotations": {"dapr.io/enabled": "true", "dapr.io/app-id": "probe"},
            },
            "spec": {"containers": [{"name": "app", "image": "probe"}]},
        }
        out = self.kubectl(
            "create", "--dry-run=server", "-o", "json", "-f", "-",
            stdin=json.dumps(probe), check=False,
        )  # fmt: skip
        if out.returncode != 0:
            return False
        return "daprd" in {c["name"] for c in json.loads(out.stdout)["spec"]["containers"]}
