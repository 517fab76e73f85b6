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
    DaprWorkflows,
    Gateway,
    GatewayError,
    Secrets,
)
from plumbing.health import SidecarReadiness
from plumbing.logs import about_activity
from plumbing.metrics import Metrics
from plumbing.scheduler import DaprScheduler
from plumbing.settings import ServiceSettings
from plumbing.state_store import DaprStateStore

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
    metrics: Metrics | None = None,
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
        scheduler=DaprScheduler(client),
        readiness=SidecarReadiness(
            settings.sidecar_url,
            settings.dapr_api_token,
            settings.state_store,
            settings.pubsub,
            settings.readiness_pubsub,
        ),
        metrics=metrics or Metrics(),
    )
    res = DaprResources(gateway, [client.close])
    if workflows:
        runtime = new_workflow_runtime()
        for name, fn in workflows.items():
            runtime.register_workflow(fn, name=name)
        for name, fn in (activities(gateway) if activities else {}).items():
            runtime.register_activity(about_activity(fn), name=name)
        runtime.start()
        res.workflow_runtime = runtime
        res.closers.append(runtime.shutdown)
        wf_client = new_workflow_client()
        res.closers.append(wf_client.close)
        gateway.workflows = DaprWorkflows(wf_client)
        log.info("workflow runtime started: %s", ", ".join(workflows))
    return res


def sdk_logger_options() -> Any:
    """The workflow SDK's loggers write through the root logger's handler, once.

    By default the SDK gives each of its loggers (WorkflowRuntime, DaprWorkflowClient,
    durabletask-worker, durabletask-client) a StreamHandler of its own, and they propagate to
    the root logger as well: every line came out twice, once in each format."""
    from dapr.ext.workflow.logger import LoggerOptions

    return LoggerOptions(log_handler=logging.NullHandler())


def new_workflow_runtime() -> Any:
    """A WorkflowRuntime for the app's sidecar (it connects when started)."""
    from dapr.ext.workflow import WorkflowRuntime

    return WorkflowRuntime(logger_options=sdk_logger_options())


def new_workflow_client() -> Any:
    """A DaprWorkflowClient for the app's sidecar."""
    from dapr.ext.workflow import DaprWorkflowClient

    return DaprWorkflowClient(logger_options=sdk_logger_options())


class KeyConfigError(ValueError):
    """A signing or verification key cannot be read or used; startup fails with the reason."""


# The apps that sign what they publish, and so whose public keys every app loads.
SIGNERS = ("orders", "approvals", "notifier")


def load_signer(secrets: Secrets, settings: ServiceSettings) -> Signer:
    """This app's signing key, from the secret store only it may read."""
    try:
        signer = Signer.from_secret(secrets.get(settings.key_store, settings.signing_secret))
    except (GatewayError, UnusableKey) as exc:
        raise KeyConfigError(
            f"cannot use signing key {settings.signing_secret!r} from secret store "
            f"{settings.key_store!r}: {exc}"
        ) from None
    _refuse_dev_key(signer.key_id, settings)
    return signer


def load_verifiers(secrets: Secrets, settings: ServiceSettings) -> dict[str, Verifier]:
    """Every signer's public keys, by signer app id; a key id names one signer only."""
    verifiers: dict[str, Verifier] = {}
    for signer in SIGNERS:
        name = f"{signer}-verify-keys"
        try:
            verifiers[signer] = Verifier.from_secret(secrets.get(settings.secret_store, name))
        except (GatewayError, UnusableKey) as exc:
            raise KeyConfigError(
                f"cannot use verification keys {name!r} from secret store "
                f"{settings.secret_store!r}: {exc}"
            ) from None
        for kid in verifiers[signer].keys:
            _refuse_dev_key(kid, settings)
    seen: dict[str, str] = {}
    for signer, verifier in verifiers.items():
        for kid in verifier.keys:
            if kid in seen:
                raise KeyConfigError(
                    f"key id {kid!r} is listed for both {seen[kid]} and {signer}: key ids must "
                    "name one signer"
                )
            seen[kid] = signer
    return verifiers


def _refuse_dev_key(key_id: str, settings: ServiceSettings) -> None:
    if key_id.startswith("dev-") and not settings.development:
        raise KeyConfigError(
            f"key {key_id!r} is a development key (committed to the repository); outside "
            "DEV_MODE use keys made with `approvals-ctl keys new`"
        )
