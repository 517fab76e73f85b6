"""The gateway's state concern: JSON values in a Dapr state store, with etags, an atomic first
write, and deletes of many keys in one transaction."""

from __future__ import annotations

import json
from typing import Any

from plumbing.gateway import Conflict, _translated


class DaprStateStore:
    """JSON values in the Dapr state store, with etags and an atomic first write."""

    def __init__(self, client: Any, store: str) -> None:
        self._client, self._store = client, store
        self._via = f"the Dapr sidecar or its state store {store!r}"

    def get(self, key: str) -> tuple[Any | None, str | None]:
        with _translated(f"get state {key}", self._via):
            resp = self._client.get_state(self._store, key)
        if not resp.data:
            return None, None
        return json.loads(resp.data), resp.etag or None

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The values of the keys that exist, in one round trip per 100 keys."""
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 100):
            chunk = keys[start : start + 100]
            with _translated(f"get {len(chunk)} keys", self._via):
                items = self._client.get_bulk_state(self._store, chunk, parallelism=8).items
            for item in items:
                if item.data:
                    found[item.key] = json.loads(item.data)
        return found

    def put(self, key: str, value: Any, etag: str | None = None) -> None:
        from dapr.clients.grpc._state import Concurrency, StateOptions

        options = StateOptions(concurrency=Concurrency.first_write) if etag else None
        with _translated(f"save state {key}", self._via):
            self._client.save_state(self._store, key, json.dumps(value), etag=etag, options=options)

    def claim(self, key: str, value: Any) -> bool:
        """Write `value` only if `key` does not exist yet; True when this call won."""
        from dapr.clients.grpc._state import Concurrency, StateOptions

        try:
            with _translated(f"claim {key}", self._via):
                self._client.save_state(
                    self._store,
                    key,
                    json.dumps(value),
                    options=StateOptions(concurrency=Concurrency.first_write),
                )
        except Conflict:
            return False
        return True

    def delete(self, key: str) -> None:
        with _translated(f"delete state {key}", self._via):
            self._client.delete_state(self._store, key)

    def delete_many(self, keys: list[str]) -> None:
        """Delete the keys (those that exist), in one transaction per 100 keys."""
        from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType

        for start in range(0, len(keys), 100):
            chunk = keys[start : start + 100]
            ops = [
                TransactionalStateOperation(key=k, operation_type=TransactionOperationType.delete)
                for k in chunk
            ]
            with _translated(f"delete {len(chunk)} keys", self._via):
                self._client.execute_state_transaction(self._store, ops)
