"""The one seam between our code and the Dapr sidecar: pub/sub, state, workflows.

Each concern is a small Protocol with a Dapr implementation (the state store's is in
state_store.py); tests pass fakes (tests/fakes.py).
Clients are synchronous, thread-safe, built once per app; routes using them are plain `def`.

Errors (all GatewayError):
  Transient       the sidecar or a component is not ready or timed out: retry later
  NotFound        the workflow instance or key does not exist
  Conflict        an optimistic-concurrency write lost (etag mismatch, first-write taken)
  SdkMismatch     the installed Dapr SDK lacks a private part this module relies on

An error's message is for the caller: what failed, through which component, whether to retry.
What the sidecar said (a gRPC error's debug string) stays out of it: it is in `detail` and logs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import grpc

from contracts.envelope import CONTENT_TYPE, wrap
from contracts.messages import Message
from contracts.signing import Signer
from contracts.timestamps import utc
from plumbing.health import Readiness
from plumbing.history import history_row
from plumbing.metrics import Metrics

log = logging.getLogger(__name__)


class GatewayError(Exception):
    """A call to the sidecar failed. The message says what and whether to retry; `detail`
    keeps what the sidecar said, for logs and for code that must tell errors apart."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = message if detail is None else detail


class Transient(GatewayError):
    """Worth retrying: the sidecar, placement or a component is not ready."""


class NotFound(GatewayError):
    """The instance or key does not exist."""


class Conflict(GatewayError):
    """A concurrent write won (etag mismatch or first-write already taken)."""


class SdkMismatch(GatewayError):
    """The Dapr SDK is not the one this code was written for (a private part moved)."""


class Publisher(Protocol):
    def publish(self, topic: str, message: Message) -> None: ...


class StateStore(Protocol):
    def get(self, key: str) -> tuple[Any | None, str | None]: ...
    def get_many(self, keys: list[str]) -> dict[str, Any]: ...
    def get_many_with_etags(self, keys: list[str]) -> dict[str, tuple[Any, str]]: ...
    def put(self, key: str, value: Any, etag: str | None = None) -> None: ...
    def claim(self, key: str, value: Any) -> bool: ...
    def delete(self, key: str) -> None: ...
    def transact(self, puts: dict[str, tuple[Any, str]], deletes: list[str]) -> None: ...


class Secrets(Protocol):
    def get(self, store: str, name: str) -> dict[str, str]: ...


class Bindings(Protocol):
    def invoke(self, name: str, operation: str, data: bytes, metadata: dict[str, str]) -> None: ...


class Scheduler(Protocol):
    """Jobs in the Dapr scheduler for this app (plumbing.scheduler): fired once per schedule,
    to one replica of the app, at POST /job/<name>; kept across restarts."""

    def schedule(self, name: str, schedule: str, data: dict[str, Any]) -> None: ...
    def get(self, name: str) -> dict[str, Any] | None: ...
    def delete(self, name: str) -> None: ...


@dataclass(frozen=True)
class InstanceState:
    """What Dapr reports about one workflow instance; times are aware UTC, None until set."""

    instance_id: str
    name: str
    status: str  # RUNNING, COMPLETED, FAILED, TERMINATED, PENDING, SUSPENDED, STALLED
    created_at: datetime | None
    updated_at: datetime | None
    custom_status: str | None
    input: str | None
    output: str | None
    failure: str | None


class Workflows(Protocol):
    def schedule(self, name: str, instance_id: str, input: Any) -> str: ...
    def state(self, instance_id: str, payloads: bool = False) -> InstanceState | None: ...
    def raise_event(self, instance_id: str, name: str, data: Any) -> None: ...
    def terminate(self, instance_id: str, output: Any = None) -> None: ...
    def suspend(self, instance_id: str, reason: str) -> None: ...
    def resume(self, instance_id: str, reason: str) -> None: ...
    def purge(self, instance_id: str, recursive: bool = True) -> bool: ...
    def wait(self, instance_id: str, timeout_s: float) -> InstanceState | None: ...
    def list_ids(self) -> list[str]: ...
    def history(self, instance_id: str) -> list[dict[str, Any]]: ...


@dataclass
class Gateway:
    """Everything an app needs from its sidecar; built once in the lifespan."""

    publisher: Publisher
    state: StateStore
    workflows: Workflows | None = None
    bindings: Bindings | None = None
    secrets: Secrets | None = None
    scheduler: Scheduler | None = None
    # What /readyz asks (plumbing.health); None: the app cannot tell, so it is not ready.
    readiness: Readiness | None = None
    # The app's business metrics: every handler and activity gets the gateway, so they count here.
    metrics: Metrics = field(default_factory=Metrics)


READ_ATTEMPTS = 5
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
# What the sidecar says when a component behind it is down or slow, whatever the status code
# (a paused Redis comes back as INTERNAL "... i/o timeout").
_TRANSIENT_TEXT = (
    "not registered",
    "no such host",
    "transient store read failure",
    "i/o timeout",
    "connection refused",
    "connection reset",
    "context deadline exceeded",
)


def _detail(exc: Exception) -> str:
    """What the sidecar said: a gRPC error's details (its str() is a multi-line repr)."""
    details = getattr(exc, "details", None)
    text = details() if callable(details) else None
    return str(text) if text else str(exc)


@contextmanager
def _translated(what: str, via: str = "the Dapr sidecar") -> Iterator[None]:
    """Map sidecar errors onto our small error tree; `via` names the component called."""
    try:
        yield
    except GatewayError:
        raise
    except Exception as exc:
        code_of = getattr(exc, "code", None)
        code = code_of() if callable(code_of) else None
        name = code.name if isinstance(code, grpc.StatusCode) else type(exc).__name__
        detail = _detail(exc)
        lowered = detail.lower()
        # An etag mismatch comes back as ABORTED: it is a lost race, not a sidecar in trouble.
        if "etag" in lowered:
            raise Conflict(f"{what}: another write came first", detail) from exc
        if code in _TRANSIENT or any(t in lowered for t in _TRANSIENT_TEXT):
            log.warning("%s failed (%s): %s", what, name, detail)
            raise Transient(
                f"{what} failed: {via} is unavailable or timed out; this is usually temporary, "
                "so it is worth retrying in a few seconds",
                detail,
            ) from exc
        # Redis reports a lost first write without an etag as a plain "failed to set key"
        # (after the timeouts above: "failed to set key ...: i/o timeout" is not one);
        # PostgreSQL (state.postgresql v2) as "no item was updated".
        if any(
            t in lowered for t in ("failed to set key", "already exists", "no item was updated")
        ):
            raise Conflict(f"{what}: it exists already", detail) from exc
        if code == grpc.StatusCode.NOT_FOUND or "not found" in lowered:
            raise NotFound(f"{what}: not found", detail) from exc
        log.warning("%s failed (%s): %s", what, name, detail)
        raise GatewayError(
            f"{what} failed: {via} reported an error ({name}); it may be temporary, so it is "
            "worth retrying, and the app's log has the details",
            detail,
        ) from exc


class DaprPublisher:
    """Publishes messages as CloudEvents whose id is the message's business id, signed by the
    app's key when it has one (the approvals app signs everything it publishes)."""

    def __init__(self, client: Any, pubsub: str, source: str, signer: Signer | None = None) -> None:
        self._client, self._pubsub, self._source = client, pubsub, source
        self._signer = signer

    def publish(self, topic: str, message: Message) -> None:
        via = f"the Dapr sidecar or its pub/sub component {self._pubsub!r}"
        with _translated(f"publish {message.event_type()} to topic {topic}", via):
            self._client.publish_event(
                pubsub_name=self._pubsub,
                topic_name=topic,
                data=wrap(message, self._source, self._signer),
                data_content_type=CONTENT_TYPE,
            )


class DaprSecrets:
    """Dapr secret stores (a local file in development, Kubernetes secrets in a cluster)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def get(self, store: str, name: str) -> dict[str, str]:
        with _translated(f"get secret {name}", f"the Dapr sidecar or its secret store {store!r}"):
            return dict(self._client.get_secret(store, name).secret)


class DaprBindings:
    """Dapr output bindings (e.g. bindings.http for webhooks)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def invoke(self, name: str, operation: str, data: bytes, metadata: dict[str, str]) -> None:
        with _translated(
            f"invoke binding {name}", f"the Dapr sidecar or its output binding {name!r}"
        ):
            self._client.invoke_binding(name, operation, data, binding_metadata=metadata)


def _status_name(raw: Any) -> str:
    name = getattr(raw, "name", str(raw))
    return str(name).upper()


WORKFLOW_ENGINE = "the Dapr sidecar's workflow engine"


RAW_CLIENT = "_DaprWorkflowClient__obj"  # its durabletask client, private in SDK 1.19


class DaprWorkflows:
    """Dapr Workflow management for the instances this app hosts."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def schedule(self, name: str, instance_id: str, input: Any) -> str:
        with _translated(f"schedule {name} {instance_id}", WORKFLOW_ENGINE):
            return str(
                self._client.schedule_new_workflow(name, input=input, instance_id=instance_id)
            )

    def state(self, instance_id: str, payloads: bool = False) -> InstanceState | None:
        """The instance's status, times and custom status; its input and output with `payloads`.

        Dapr sends the custom status only with the payloads, so they are always fetched and the
        input and output dropped unless asked for. Dapr's times are naive UTC, and year 1 until
        the instance has started: they come back aware, or None."""
        # A read can race the instance's own save ("... missing from state store (transient
        # store read failure ...)"): reads are idempotent, so try again briefly.
        for attempt in range(READ_ATTEMPTS):
            try:
                with _translated(f"get workflow {instance_id}", WORKFLOW_ENGINE):
                    st = self._client.get_workflow_state(instance_id, fetch_payloads=True)
                break
            except Transient:
                if attempt + 1 == READ_ATTEMPTS:
                    raise
                time.sleep(0.05 * 2**attempt)
        if st is None:
            return None
        failure = getattr(st, "failure_details", None)
        return InstanceState(
            instance_id=instance_id,
            name=str(getattr(st, "name", "")),
            status=_status_name(st.runtime_status),
            created_at=utc(getattr(st, "created_at", None)),
            updated_at=utc(getattr(st, "last_updated_at", None)),
            custom_status=getattr(st, "serialized_custom_status", None),
            input=getattr(st, "serialized_input", None) if payloads else None,
            output=getattr(st, "serialized_output", None) if payloads else None,
            failure=getattr(failure, "message", None) if failure else None,
        )

    def raise_event(self, instance_id: str, name: str, data: Any) -> None:
        with _translated(f"raise {name} on {instance_id}", WORKFLOW_ENGINE):
            self._client.raise_workflow_event(instance_id, name, data=data)

    def terminate(self, instance_id: str, output: Any = None) -> None:
        with _translated(f"terminate {instance_id}", WORKFLOW_ENGINE):
            self._client.terminate_workflow(instance_id, output=output)

    def suspend(self, instance_id: str, reason: str) -> None:
        with _translated(f"suspend {instance_id}", WORKFLOW_ENGINE):
            self._client.pause_workflow(instance_id)

    def resume(self, instance_id: str, reason: str) -> None:
        with _translated(f"resume {instance_id}", WORKFLOW_ENGINE):
            self._client.resume_workflow(instance_id)

    def purge(self, instance_id: str, recursive: bool = True) -> bool:
        """Delete a finished instance's history; Dapr refuses one that has not finished.

        `recursive` (the SDK's default) first reads the instance once more to find child
        workflows to purge with it; without it only the instance goes."""
        with _translated(f"purge {instance_id}", WORKFLOW_ENGINE):
            return bool(self._client.purge_workflow(instance_id, recursive=recursive))

    def wait(self, instance_id: str, timeout_s: float) -> InstanceState | None:
        with (
            _translated(f"wait for {instance_id}", WORKFLOW_ENGINE),
            contextlib.suppress(TimeoutError),
        ):
            self._client.wait_for_workflow_completion(
                instance_id, fetch_payloads=False, timeout_in_seconds=int(max(1, timeout_s))
            )
        return self.state(instance_id)

    def list_ids(self) -> list[str]:
        """Every instance id Dapr knows for this app (it scans the actor state store)."""
        with _translated("list workflow instances", WORKFLOW_ENGINE):
            return list(self._client.iter_workflow_instance_ids(page_size=1000))

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        """The instance's history events as rows (plumbing.history), oldest first.

        Read from the durabletask client under the SDK's: its summary drops timers' due times
        and which event a wait is for, which a diagnosis needs."""
        raw = getattr(self._client, RAW_CLIENT, None)
        if raw is None or not hasattr(raw, "get_instance_history"):
            need = "Dapr Python SDK 1.19 (dapr[workflow]==1.19.0, as locked)"
            raise SdkMismatch(f"history of {instance_id}: no {RAW_CLIENT}; needs {need}")
        with _translated(f"history of {instance_id}", WORKFLOW_ENGINE):
            events = raw.get_instance_history(instance_id)
        return [history_row(e) for e in events]


def workflows_of(gateway: Gateway) -> Workflows:
    """The workflow client of an app that hosts workflows."""
    assert gateway.workflows is not None, "this app hosts no workflows"
    return gateway.workflows


def schedule_once(gateway: Gateway, name: str, instance_id: str, input: Any) -> None:
    """Schedule a workflow; an instance that is already running counts as done."""
    try:
        workflows_of(gateway).schedule(name, instance_id, input)
    except Conflict as exc:
        if "already exists" not in exc.detail:
            raise
