"""The gateway's state concern: JSON values in a Dapr state store, with etags, an atomic first
write, and transactions over many keys."""

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
        return {k: value for k, (value, _) in self.get_many_with_etags(keys).items()}

    def get_many_with_etags(self, keys: list[str]) -> dict[str, tuple[Any, str]]:
        """The values and etags of the keys that exist, in one round trip per 100 keys."""
        found: dict[str, tuple[Any, str]] = {}
        for start in range(0, len(keys), 100):
            chunk = keys[start : start + 100]
            with _translated(f"get {len(chunk)} keys", self._via):
                items = self._client.get_bulk_state(self._store, chunk, parallelism=8).items
            for item in items:
                if item.data:
                    found[item.key] = (json.loads(item.data), item.etag)
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

    def transact(self, puts: dict[str, tuple[Any, str]], deletes: list[str]) -> None:
        """Write (each value under the etag it was read with) and delete, in one transaction.

        A stale etag raises Conflict. Redis has then made the other changes (it cannot roll a
        transaction back), PostgreSQL none: either way, read again and redo what is left."""
        from dapr.clients.grpc._request import TransactionalStateOperation as Op
        from dapr.clients.grpc._request import TransactionOperationType

        ops = [Op(k, json.dumps(value), etag=etag) for k, (value, etag) in puts.items()]
        ops += [Op(k, operation_type=TransactionOperationType.delete) for k in deletes]
        with _translated(f"write {len(puts)} and delete {len(deletes)} keys", self._via):
            self._client.execute_state_transaction(self._store, ops)
