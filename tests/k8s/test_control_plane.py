"""The tier's control plane itself: it knows Dapr's real schemas (it refuses what deploy/ once
carried: both were in deploy/ until this tier first applied it, issue 10; a local run drops the
first without a word and never reads the second), and it listens nowhere on the machine."""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml

from tests.k8s.cluster import ControlPlane

pytestmark = pytest.mark.k8s


def refusal(plane: ControlPlane, doc: dict[str, Any]) -> str:
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


def test_no_part_of_the_control_plane_listens_on_the_machine(control_plane: ControlPlane) -> None:
    """sentry's and the injector's health ports and the injector's webhook bind every
    interface (a Dapr bug): every process runs in the tier's own network namespace."""
    machine = os.readlink("/proc/self/ns/net")
    for proc in control_plane.procs:
        assert proc.alive(), proc.name
        assert os.readlink(f"/proc/{proc.pid}/ns/net") != machine, proc.name
