"""Open an app's Dapr clients once and start its WorkflowRuntime: used by each app's lifespan."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contracts.signing import Signer, UnusableKey, Verifier
from plumbing.gateway import (
    DaprBindings,
    DaprPublisher,
    DaprSecrets,
    DaprStateStore,
    DaprWorkflows,
    Gateway,
    GatewayError,
    Secrets,
)
from plumbing.settings import ServiceSettings

log = logging.getLogger(__name__)

ActivityFactory = Callable[[Gateway], dict[str, Callable[..., Any]]]


@dataclass
class DaprResources:
    """What the lifespan opened and must close."""

    gateway: Gateway
    closers: list[Callable[[], None]] = field(default_factory=list)
    workflow_runtime: Any = None

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # closing is best effort; the process is going away
                log.exception("error while closing Dapr clients")


def open_dapr(
    settings: ServiceSettings,
    workflows: dict[str, Callable[..., Any]] | None = None,
    activities: ActivityFactory | None = None,
    signs: bool = False,
) -> DaprResources:
    """Build the clients (this waits for the sidecar) and start the workflow worker.

    With `signs`, everything the app publishes is signed with its key from the secret store."""
    from dapr.clients import DaprClient

    client = DaprClient()
    secrets = DaprSecrets(client)
    signer = load_signer(secrets, settings) if signs else None
    gateway = Gateway(
        publisher=DaprPublisher(client, settings.pubsub, source=settings.app_id, signer=signer),
        state=DaprStateStore(client, settings.state_store),
        bindings=DaprBindings(client),
        secrets=secrets,
    )
    res = DaprResources(gateway, [client.close])
    if workflows:
        from dapr.ext.workflow import DaprWorkflowClient, WorkflowRuntime

        runtime = WorkflowRuntime()
        for name, fn in workflows.items():
            runtime.register_workflow(fn, name=name)
        for name, fn in (activities(gateway) if activities else {}).items():
            runtime.register_activity(fn, name=name)
        runtime.start()
        res.workflow_runtime = runtime
        res.closers.append(runtime.shutdown)
        wf_client = DaprWorkflowClient()
        res.closers.append(wf_client.close)
        gateway.workflows = DaprWorkflows(wf_client)
        log.info("workflow runtime started: %s", ", ".join(workflows))
    return res


class KeyConfigError(ValueError):
    """A signing or verification key cannot be read or used; startup fails with the reason."""


def load_signer(secrets: Secrets, settings: ServiceSettings) -> Signer:
    """This app's signing key, from its own secret store."""
    try:
        return Signer.from_secret(secrets.get(settings.signing_store, settings.signing_secret))
    except (GatewayError, UnusableKey) as exc:
        raise KeyConfigError(
            f"cannot use signing key {settings.signing_secret!r} from secret store "
            f"{settings.signing_store!r}: {exc}"
        ) from None


def load_verifier(secrets: Secrets, settings: ServiceSettings) -> Verifier:
    """The public keys of the approvals service, which signs decisions and outcomes."""
    try:
        return Verifier.from_secret(secrets.get(settings.secret_store, settings.verify_keys_secret))
    except (GatewayError, UnusableKey) as exc:
        raise KeyConfigError(
            f"cannot use verification keys {settings.verify_keys_secret!r} from secret store "
            f"{settings.secret_store!r}: {exc}"
        ) from None
