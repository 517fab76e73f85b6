"""A real Kubernetes control plane with Dapr's control plane, on loopback, for the k8s tier.

etcd, kube-apiserver and kube-controller-manager (the controllers that turn Deployments into
ReplicaSets and Pods, scale them by their HorizontalPodAutoscaler, watch PodDisruptionBudgets
and clean up namespaces), then Dapr's CRDs, sentry and sidecar injector, set up as Dapr's Helm
chart sets them up. There is no kubelet, scheduler or kube-proxy: Pods are created, mutated by
the injector and admitted, and stay Pending.

The API server reaches the injector's webhook by its service name
(dapr-sidecar-injector.dapr-system.svc, the name in the certificate sentry gives the injector),
which a private hosts file maps to 127.0.0.1 inside a mount namespace of the API server's own:
the machine's /etc/hosts is not touched.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from devstack.kube import KubeParts
from devstack.procs import LOOPBACK, Proc, free_port, http_ok
from tests.k8s.pki import Pki, make_pki

DAPR_NS = "dapr-system"
INJECTOR_HOST = f"dapr-sidecar-injector.{DAPR_NS}.svc"
TRUST_DOMAIN = "cluster.local"
# Nothing here leaves the machine: clients must not route loopback or service names to a proxy.
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


def _dapr_system(injector_port: int, dapr_version: str) -> list[dict[str, Any]]:
    """What Dapr's Helm chart creates before its pods run, reduced to what sentry and the
    injector read: their namespace, service accounts, the (empty) trust bundle that sentry
    fills in, the control plane's Configuration, the webhook, and a Pod object per service
    for sentry to bind their tokens to (never scheduled: there is no kubelet)."""
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DAPR_NS}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dapr-trust-bundle"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dapr-trust-bundle"}},
        {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Configuration",
            "metadata": {"name": "daprsystem"},
            "spec": {
                "mtls": {
                    "enabled": True,
                    "workloadCertTTL": "24h",
                    "allowedClockSkew": "15m",
                    "controlPlaneTrustDomain": TRUST_DOMAIN,
                    "sentryAddress": f"dapr-sentry.{DAPR_NS}.svc.cluster.local:443",
                }
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "dapr-sidecar-injector"},
            "webhooks": [
                {
                    "name": "sidecar-injector.dapr.io",
                    "reinvocationPolicy": "IfNeeded",
                    "clientConfig": {"url": f"https://{INJECTOR_HOST}:{injector_port}/mutate"},
                    "rules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["pods"],
                            "operations": ["CREATE"],
                        }
                    ],
                    # Fail, not Ignore: a Pod the injector could not see is an error here.
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                }
            ],
        },
    ]
    for service in ("sentry", "injector", "operator"):
        docs.append(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": f"dapr-{service}"}}
        )
    for service in ("injector", "operator"):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"dapr-{service}",
                    "annotations": {"dapr.io/control-plane": service},
                },
                "spec": {
                    "serviceAccountName": f"dapr-{service}",
                    "containers": [{"name": service, "image": f"ghcr.io/dapr/dapr:{dapr_version}"}],
                },
            }
        )
    for doc in docs:
        if doc["kind"] not in ("Namespace", "MutatingWebhookConfiguration"):
            doc["metadata"]["namespace"] = DAPR_NS
    return docs


class ControlPlane:
    """Start with start(), stop with stop(); logs and PKI stay in run_dir."""

    def __init__(self, parts: KubeParts, run_dir: Path) -> None:
        self.parts = parts
        self.run_dir = run_dir
        self.procs: list[Proc] = []
        self.pki: Pki = make_pki(run_dir / "pki")
        self.kubeconfig = run_dir / "admin.kubeconfig"
        self.ports = {
            name: free_port()
            for name in (
                "etcd",
                "etcd-peer",
                "apiserver",
                "controller-manager",
                "sentry",
                "sentry-health",
                "sentry-metrics",
                "injector",
                "injector-health",
                "injector-metrics",
            )
        }

    # -- clients -------------------------------------------------------------------------

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [str(self.parts.binary("kubectl")), *args],
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

    def _api_ok(self, path: str) -> bool:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        url = f"https://{LOOPBACK}:{self.ports['apiserver']}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as resp:
                return int(resp.status) == 200
        except OSError:
            return False

    # -- processes -----------------------------------------------------------------------

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(
            name, args, self.run_dir / "logs" / f"{name}.log", env={**NO_PROXY, **(env or {})}
        )
        self.procs.append(proc.start())
        return proc

    def start(self) -> None:
        etcd = self._start_etcd()
        etcd.wait_ready(
            lambda: http_ok(f"http://{LOOPBACK}:{self.ports['etcd']}/health"), "healthy", 60
        )
        api = self._start_apiserver()
        api.wait_ready(lambda: self._api_ok("/readyz"), "ready", 120)
        self._write_kubeconfig()
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
        docs = _dapr_system(self.ports["injector"], self.parts.dapr_version)
        webhook = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
        self.apply_docs([d for d in docs if d not in webhook])
        self.apply_docs(webhook)
        sentry = self._start_sentry()
        sentry.wait_ready(self._trust_anchors_published, "publishing its trust anchors", 90)
        anchors = self.run_dir / "dapr" / "ca.crt"
        bundle = self.get("configmap", "dapr-trust-bundle", "-n", DAPR_NS)["data"]["ca.crt"]
        anchors.write_text(bundle)
        injector = self._start_injector(anchors)
        injector.wait_ready(self._webhook_trusts_injector, "serving the webhook", 90)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(grace=10)

    def _start_etcd(self) -> Proc:
        client = f"http://{LOOPBACK}:{self.ports['etcd']}"
        peer = f"http://{LOOPBACK}:{self.ports['etcd-peer']}"
        return self._start(
            "etcd",
            [
                str(self.parts.binary("etcd")),
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
        hosts = self.run_dir / "hosts"
        machine = Path("/etc/hosts").read_text() if Path("/etc/hosts").is_file() else ""
        hosts.write_text(f"{machine.rstrip()}\n{LOOPBACK} {INJECTOR_HOST}\n")
        # A private /etc/hosts for this process alone (its own mount namespace); without root,
        # in a user namespace of its own too.
        unshare = ["unshare", "--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            unshare.insert(1, "--map-root-user")
        issuer = "https://kubernetes.default.svc.cluster.local"
        pki = self.pki
        return self._start(
            "kube-apiserver",
            [
                *unshare,
                "sh",
                "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"',
                str(hosts),
                str(self.parts.binary("kube-apiserver")),
                f"--etcd-servers=http://{LOOPBACK}:{self.ports['etcd']}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={self.ports['apiserver']}",
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

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "tier",
                    "cluster": {
                        "server": f"https://{LOOPBACK}:{self.ports['apiserver']}",
                        "certificate-authority-data": b64(self.pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate-data": b64(self.pki.admin_cert),
                        "client-key-data": b64(self.pki.admin_key),
                    },
                }
            ],
            "contexts": [{"name": "tier", "context": {"cluster": "tier", "user": "admin"}}],
            "current-context": "tier",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _start_controller_manager(self) -> Proc:
        kubeconfig = str(self.kubeconfig)
        return self._start(
            "kube-controller-manager",
            [
                str(self.parts.binary("kube-controller-manager")),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={self.ports['controller-manager']}",
                f"--cert-dir={self.run_dir / 'controller-manager'}",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={self.pki.sa_private}",
                f"--root-ca-file={self.pki.ca_cert}",
                "--leader-elect=false",
                # How often an HPA is reconciled: it scales a Deployment up to minReplicas.
                "--horizontal-pod-autoscaler-sync-period=2s",
            ],
        )

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
        return self._start(
            "sentry",
            [
                str(self.parts.binary("sentry")),
                "--mode=kubernetes",
                f"--kubeconfig={self.kubeconfig}",
                "--config=daprsystem",
                f"--trust-domain={TRUST_DOMAIN}",
                f"--issuer-credentials={credentials}",
                f"--listen-address={LOOPBACK}",
                f"--port={self.ports['sentry']}",
                f"--healthz-listen-address={LOOPBACK}",
                f"--healthz-port={self.ports['sentry-health']}",
                f"--metrics-listen-address={LOOPBACK}",
                f"--metrics-port={self.ports['sentry-metrics']}",
            ],
            self._dapr_env(),
        )

    def _trust_anchors_published(self) -> bool:
        out = self.kubectl("get", "configmap", "dapr-trust-bundle", "-n", DAPR_NS, "-o", "json")
        return "BEGIN CERTIFICATE" in json.loads(out.stdout).get("data", {}).get("ca.crt", "")

    def _start_injector(self, anchors: Path) -> Proc:
        token = self.run_dir / "dapr" / "injector.token"
        token.write_text(
            self.kubectl(
                "create",
                "token",
                "dapr-injector",
                "-n",
                DAPR_NS,
                "--audience=dapr.io/sentry",
                "--bound-object-kind=Pod",
                "--bound-object-name=dapr-injector",
                "--duration=2h",
            ).stdout.strip()
        )
        env = {
            **self._dapr_env(),
            "SIDECAR_IMAGE": f"ghcr.io/dapr/daprd:{self.parts.dapr_version}",
            "DAPR_TRUST_ANCHORS_FILE": str(anchors),
            "DAPR_CONTROL_PLANE_TRUST_DOMAIN": TRUST_DOMAIN,
            "DAPR_SENTRY_ADDRESS": f"{LOOPBACK}:{self.ports['sentry']}",
            "DAPR_SENTRY_TOKEN_FILE": str(token),
            "KUBE_CLUSTER_DOMAIN": "cluster.local",
            # What docs/operations.md tells Helm users to set:
            # dapr_sidecar_injector.sidecarDropALLCapabilities=true.
            "SIDECAR_DROP_ALL_CAPABILITIES": "true",
            "ACTORS_ENABLED": "true",
            "ACTORS_SERVICE_NAME": "placement",
            "ACTORS_SERVICE_ADDRESS": "dapr-placement-server:50005",
        }
        return self._start(
            "injector",
            [
                str(self.parts.binary("injector")),
                f"--kubeconfig={self.kubeconfig}",
                f"--listen-address={LOOPBACK}",
                f"--port={self.ports['injector']}",
                f"--healthz-listen-address={LOOPBACK}",
                f"--healthz-port={self.ports['injector-health']}",
                f"--metrics-listen-address={LOOPBACK}",
                f"--metrics-port={self.ports['injector-metrics']}",
            ],
            env,
        )

    def _webhook_trusts_injector(self) -> bool:
        """The injector put its CA into the webhook and answers on its port."""
        hook = self.get("mutatingwebhookconfiguration", "dapr-sidecar-injector")
        if not hook["webhooks"][0]["clientConfig"].get("caBundle"):
            return False
        return http_ok(f"http://{LOOPBACK}:{self.ports['injector-health']}/healthz")
