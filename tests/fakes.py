"""Fakes for the one seam (plumbing.gateway): they record, they do not mock."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx

from contracts.messages import (
    ApprovalCancelled,
    ApprovalOutcome,
    ApprovalReminded,
    ApprovalRequested,
    DecisionSubmitted,
    Message,
    OrderStatusChanged,
)
from contracts.signing import Signer, new_key_pair
from plumbing.gateway import Conflict, Gateway, GatewayError, InstanceState, NotFound, Transient
from plumbing.health import SidecarReadiness
from plumbing.settings import ServiceSettings


@dataclass
class FakePublisher:
    published: list[tuple[str, Message]] = field(default_factory=list)
    down: bool = False

    def publish(self, topic: str, message: Message) -> None:
        if self.down:
            raise Transient("pubsub is not ready")
        self.published.append((topic, message))

    def to(self, topic: str) -> list[Message]:
        return [m for t, m in self.published if t == topic]


@dataclass
class FakeStateStore:
    """Each call is atomic, as in Redis: threads may share one store like replicas share
    theirs. Writes to keys starting with one of `refuse_writes` fail like a store in trouble.

    As Dapr's Redis store does, a key written with first-write concurrency (a claim, or a put
    with an etag, which the gateway sends as first-write) can be overwritten only with its
    etag: a plain put over it fails ("failed to set key", a Conflict)."""

    data: dict[str, tuple[Any, str]] = field(default_factory=dict)
    refuse_writes: tuple[str, ...] = ()
    first_written: set[str] = field(default_factory=set)
    _etags: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def _check(self, key: str) -> None:
        if self.refuse_writes and key.startswith(self.refuse_writes):
            raise Transient(f"save state {key}: the state store timed out")

    def get(self, key: str) -> tuple[Any | None, str | None]:
        with self._lock:
            if key not in self.data:
                return None, None
            value, etag = self.data[key]
            return copy.deepcopy(value), etag

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        with self._lock:
            return {k: copy.deepcopy(self.data[k][0]) for k in keys if k in self.data}

    def get_many_with_etags(self, keys: list[str]) -> dict[str, tuple[Any, str]]:
        with self._lock:
            return {k: copy.deepcopy(self.data[k]) for k in keys if k in self.data}

    def put(self, key: str, value: Any, etag: str | None = None) -> None:
        with self._lock:
            self._check(key)
            if etag is not None and (key not in self.data or self.data[key][1] != etag):
                raise Conflict(f"etag mismatch on {key}")
            if etag is None and key in self.first_written:
                raise Conflict(f"failed to set key {key}: written first-write, put without etag")
            self.data[key] = (copy.deepcopy(value), str(next(self._etags)))
            if etag is not None:
                self.first_written.add(key)

    def claim(self, key: str, value: Any) -> bool:
        with self._lock:
            self._check(key)
            if key in self.data:
                return False
            self.put(key, value)
            self.first_written.add(key)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._check(key)
            self.data.pop(key, None)
            self.first_written.discard(key)

    def transact(self, puts: dict[str, tuple[Any, str]], deletes: list[str]) -> None:
        """All or nothing, as PostgreSQL does (Redis makes the changes it can: see the gateway)."""
        with self._lock:
            for key in [*puts, *deletes]:
                self._check(key)
            for key, (_, etag) in puts.items():
                if key not in self.data or self.data[key][1] != etag:
                    raise Conflict(f"etag mismatch on {key}")
            for key, (value, etag) in puts.items():
                self.put(key, value, etag)
            for key in deletes:
                self.delete(key)


@dataclass
class FakeWorkflows:
    """`failing` names operations ("suspend", "purge", ...) that fail like a sidecar in trouble."""

    instances: dict[str, InstanceState] = field(default_factory=dict)
    scheduled: list[tuple[str, str, Any]] = field(default_factory=list)
    raised: list[tuple[str, str, Any]] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    # Every purge asked for, in order, whether or not it found the instance.
    purges: list[str] = field(default_factory=list)
    # History rows per instance (as plumbing.history makes them); one start event otherwise.
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def _check(self, operation: str) -> None:
        if operation in self.failing:
            raise Transient(f"{operation}: the sidecar timed out")

    def add(self, instance_id: str, status: str = "RUNNING", name: str = "wf") -> None:
        now = datetime.now(UTC)
        self.instances[instance_id] = InstanceState(
            instance_id, name, status, now, now, None, None, None, None
        )

    def schedule(self, name: str, instance_id: str, input: Any) -> str:
        self._check("schedule")
        if instance_id in self.instances and self.instances[instance_id].status == "RUNNING":
            raise Conflict(f"an active workflow with ID '{instance_id}' already exists")
        self.scheduled.append((name, instance_id, input))
        self.add(instance_id, name=name)
        return instance_id

    def state(self, instance_id: str, payloads: bool = False) -> InstanceState | None:
        return self.instances.get(instance_id)

    def raise_event(self, instance_id: str, name: str, data: Any) -> None:
        self._check("raise_event")
        self.raised.append((instance_id, name, data))

    def _move(self, instance_id: str, status: str, output: Any = None) -> None:
        """A status change keeps the instance's name; Dapr stores the output as JSON."""
        st = self.instances[instance_id]
        self.instances[instance_id] = replace(
            st,
            status=status,
            updated_at=datetime.now(UTC),
            output=json.dumps(output) if output is not None else st.output,
        )

    def terminate(self, instance_id: str, output: Any = None) -> None:
        self._check("terminate")
        self._move(instance_id, "TERMINATED", output)

    def suspend(self, instance_id: str, reason: str) -> None:
        self._check("suspend")
        self._move(instance_id, "SUSPENDED")

    def resume(self, instance_id: str, reason: str) -> None:
        self._check("resume")
        self._move(instance_id, "RUNNING")

    def purge(self, instance_id: str, recursive: bool = True) -> bool:
        """As Dapr: an instance that has not finished is refused, a missing one not found."""
        self._check("purge")
        self.purges.append(instance_id)
        st = self.instances.get(instance_id)
        if st is None:
            raise NotFound(f"purge {instance_id}: not found")
        if st.status not in {"COMPLETED", "FAILED", "TERMINATED"}:
            raise GatewayError(f"purge {instance_id}: workflow is not completed")
        del self.instances[instance_id]
        return True

    def wait(self, instance_id: str, timeout_s: float) -> InstanceState | None:
        return self.instances.get(instance_id)

    def list_ids(self) -> list[str]:
        return sorted(self.instances)

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        started = [{"event_id": -1, "type": "EXECUTION_STARTED", "name": instance_id}]
        return self.histories.get(instance_id, started)


@dataclass
class FakeBindings:
    """Records output-binding calls; `failing` makes them raise like an unreachable endpoint."""

    calls: list[tuple[str, str, bytes, dict[str, str]]] = field(default_factory=list)
    failing: bool = False

    def invoke(self, name: str, operation: str, data: bytes, metadata: dict[str, str]) -> None:
        if self.failing:
            raise Transient(f"binding {name}: connection refused")
        self.calls.append((name, operation, data, metadata))


@dataclass
class FakeScheduler:
    """Jobs as the Dapr scheduler keeps them: by name, replaced whole; `calls` records every
    schedule and delete, so a test can tell a replaced job from one left alone."""

    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    down: int = 0  # how many calls still fail, as while the scheduler leads again

    def _check(self, name: str) -> None:
        if self.down > 0:
            self.down -= 1
            raise Transient(f"job {name}: the Dapr sidecar or its scheduler is unavailable")

    def schedule(self, name: str, schedule: str, data: dict[str, Any]) -> None:
        self._check(name)
        self.calls.append(("schedule", name))
        self.jobs[name] = {"schedule": schedule, "data": copy.deepcopy(data)}

    def get(self, name: str) -> dict[str, Any] | None:
        self._check(name)
        return copy.deepcopy(self.jobs.get(name))

    def delete(self, name: str) -> None:
        self._check(name)
        self.calls.append(("delete", name))
        self.jobs.pop(name, None)


SECRETS = Path(__file__).resolve().parents[1] / "secrets"
# The development secret stores of components/: store name -> its local file.
DEV_STORES = {
    "localsecretstore": SECRETS / "dev-secrets.json",
    "orders-keys": SECRETS / "dev-orders-keys.json",
    "approvals-keys": SECRETS / "dev-approvals-keys.json",
    "notifier-keys": SECRETS / "dev-notifier-keys.json",
}


TEST_AUDIT_KEY = {"current": "test-1", "test-1": "test-only-audit-key-0123456789abcdefghij"}


@dataclass
class FakeSecrets:
    """Serves the development secret files, as the local-file secret stores would, with a test
    audit key (service tests run without DEV_MODE, which refuses the development one);
    `secrets` replaces entries of the shared store (e.g. a production token table)."""

    secrets: dict[str, dict[str, str]] | None = None

    def get(self, store: str, name: str) -> dict[str, str]:
        if store not in DEV_STORES:
            raise NotFound(f"no secret store {store}")
        found: dict[str, dict[str, str]] = json.loads(DEV_STORES[store].read_text())
        if store == "localsecretstore":
            found |= {"audit-key": TEST_AUDIT_KEY} | (self.secrets or {})
        if name not in found:
            raise NotFound(f"secret {name} not found in {store}")
        return dict(found[name])


def dev_signer(app: str = "approvals") -> Signer:
    """A signing app's development key (what its sidecar's key store holds)."""
    return Signer.from_secret(FakeSecrets().get(f"{app}-keys", "signing-key"))


def production_keys() -> dict[str, dict[str, str]]:
    """Shared-store entries a production stack would hold: verification keys not from git."""
    return {
        f"{app}-verify-keys": new_key_pair(f"{app}-test-1")[1]
        for app in ("orders", "approvals", "notifier")
    }


def signing_app(message: Message) -> str | None:
    """Which app signs this kind of message, as the services do; None: nobody signs it."""
    if isinstance(message, (DecisionSubmitted, ApprovalOutcome, ApprovalReminded)):
        return "approvals"
    if isinstance(message, ApprovalRequested):
        return "orders" if message.stage == 1 else "approvals"
    if isinstance(message, (OrderStatusChanged, ApprovalCancelled)):
        return "orders"
    return None


TOKENS = {
    "admin": "dev-admin-ada",
    "operator": "dev-operator-olga",
    "viewer": "dev-viewer-vic",
    "manager": "dev-manager-bob",
    "manager2": "dev-manager-mia",
    "vp": "dev-vp-val",
}


S = TypeVar("S", bound=ServiceSettings)


def development(settings: S) -> S:
    """`settings` of a development stack (DEV_MODE=true): only there do the dev- tokens pass."""
    return dataclasses.replace(settings, development=True)


# A host name the apps answer (ALLOWED_HOSTS), for test clients.
LOCAL = "http://127.0.0.1"


def bearer(who: str) -> dict[str, str]:
    """The Authorization header of a development principal ("admin", "manager", ...)."""
    return {"Authorization": f"Bearer {TOKENS[who]}"}


@dataclass
class FakeSidecar:
    """The sidecar's HTTP API as readiness asks it (an httpx.MockTransport handler): it keeps
    the requests it answered, and fails the way it is told to."""

    TOKEN: ClassVar[str] = "fake-sidecar-token"

    components: tuple[str, ...] = ("statestore", "pubsub", "readiness", "localsecretstore")
    # None: the sidecar answers; else how it fails: "refused" (not running) or "hung".
    sidecar: str | None = None
    # None: the state store answers; "refused" (Redis down), "hung" (Redis paused).
    store: str | None = None
    # The same for the pub/sub's broker, which the probe message reaches.
    broker: str | None = None
    # Workflow workers connected to the sidecar (its metadata's workflows.connectedWorkers).
    workers: int = 1
    asked: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(request)
        path = request.url.path
        self._fail(self.sidecar, request)
        if path == "/v1.0/healthz/outbound":
            return httpx.Response(204)
        if request.headers.get("dapr-api-token") != FakeSidecar.TOKEN:
            return httpx.Response(401, json={"message": "invalid api token"})
        if path == "/v1.0/metadata":
            return httpx.Response(
                200,
                json={
                    "components": [{"name": c} for c in self.components],
                    "actorRuntime": {"runtimeStatus": "RUNNING", "placement": "connected"},
                    "scheduler": {"connected_addresses": ["127.0.0.1:50006"]},
                    "workflows": {"connectedWorkers": self.workers} if self.workers else {},
                },
            )
        if path.startswith("/v1.0/state/"):
            if self.store == "refused":
                return httpx.Response(
                    500,
                    json={
                        "errorCode": "ERR_STATE_GET",
                        "message": "fail to get readyz-probe from state store statestore: "
                        "dial tcp 127.0.0.1:6380: connect: connection refused",
                    },
                )
            self._fail(self.store, request)
            return httpx.Response(204)
        if path == "/v1.0/publish/readiness/readyz" and request.method == "POST":
            if self.broker == "refused":
                return httpx.Response(
                    500,
                    json={
                        "errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
                        "message": "error when publishing to topic readyz in pubsub readiness: "
                        "redis streams: error from publish: dial tcp 127.0.0.1:6380: connect: "
                        "connection refused",
                    },
                )
            self._fail(self.broker, request)
            return httpx.Response(204)
        return httpx.Response(404)

    @staticmethod
    def _fail(how: str | None, request: httpx.Request) -> None:
        if how == "refused":
            raise httpx.ConnectError("connection refused", request=request)
        if how == "hung":
            raise httpx.ReadTimeout("timed out", request=request)

    def readiness(
        self, state_store: str = "statestore", pubsub: str = "pubsub"
    ) -> SidecarReadiness:
        return SidecarReadiness(
            "http://127.0.0.1:3500",
            FakeSidecar.TOKEN,
            state_store,
            pubsub,
            transport=httpx.MockTransport(self),
        )


def fake_gateway(sidecar: FakeSidecar | None = None) -> Gateway:
    return Gateway(
        publisher=FakePublisher(),
        state=FakeStateStore(),
        workflows=FakeWorkflows(),
        bindings=FakeBindings(),
        secrets=FakeSecrets(),
        readiness=(sidecar or FakeSidecar()).readiness(),
        scheduler=FakeScheduler(),
    )
