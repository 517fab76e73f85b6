"""Open an app's Dapr clients once and start its WorkflowRuntime: used by each app's lifespan."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from plumbing.gateway import (
    DaprBindings,
    DaprPublisher,
    DaprSecrets,
    DaprStateStore,
    DaprWorkflows,
    Gateway,
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
) -> DaprResources:
    """Build the clients (this waits for the sidecar) and start the workflow worker."""
    from dapr.clients import DaprClient

    client = DaprClient()
    gateway = Gateway(
        publisher=DaprPublisher(client, settings.pubsub, source=settings.app_id),
        state=DaprStateStore(client, settings.state_store),
        bindings=DaprBindings(client),
        secrets=DaprSecrets(client),
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
