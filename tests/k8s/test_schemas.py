"""The tier's API server knows Dapr's real schemas: it refuses what deploy/ once carried.

Both were in deploy/ until this tier first applied it (issue 10); a local run drops the first
without a word and never reads the second, so only a real API server shows them."""

from __future__ import annotations

import pytest
import yaml

from tests.k8s.cluster import ControlPlane

pytestmark = pytest.mark.k8s


def refusal(plane: ControlPlane, doc: dict) -> str:
    doc["metadata"]["namespace"] = "default"
    out = plane.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        "-",
        stdin=yaml.safe_dump(doc),
        check=False,
    )
    assert out.returncode != 0, f"accepted: {doc}"
    return out.stderr


def test_a_retry_policy_field_dapr_does_not_have_is_refused(control_plane: ControlPlane) -> None:
    retry = {"policy": "exponential", "initialInterval": "200ms", "maxRetries": 3}
    doc = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": "old-resiliency"},
        "spec": {"policies": {"retries": {"pubsubInbound": retry}}},
    }
    # Server-side apply's wording; a client-side apply says `unknown field "..."`.
    message = refusal(control_plane, doc)
    assert ".spec.policies.retries.pubsubInbound.initialInterval: field not declared" in message


def test_an_app_configuration_that_sets_mtls_is_refused(control_plane: ControlPlane) -> None:
    doc = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Configuration",
        "metadata": {"name": "old-config"},
        "spec": {"mtls": {"enabled": True}},
    }
    message = refusal(control_plane, doc)
    assert "spec.mtls.controlPlaneTrustDomain: Required value" in message
    assert "spec.mtls.sentryAddress: Required value" in message
