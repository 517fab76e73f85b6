"""What Dapr's Helm chart creates before its control plane runs, reduced to what sentry and
the injector read (tests/k8s/cluster.py applies it)."""

from __future__ import annotations

from typing import Any

DAPR_NS = "dapr-system"
INJECTOR_HOST = f"dapr-sidecar-injector.{DAPR_NS}.svc"
# Where the injector and the operator find sentry: the daprsystem Configuration's address, as
# Helm sets it (tests/k8s/cluster.py maps the name to 127.0.0.1 in its own /etc/hosts).
SENTRY_ADDRESS = f"dapr-sentry.{DAPR_NS}.svc.cluster.local:443"
TRUST_DOMAIN = "cluster.local"


def dapr_system(injector_port: int, dapr_version: str) -> list[dict[str, Any]]:
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
                    "sentryAddress": SENTRY_ADDRESS,
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
