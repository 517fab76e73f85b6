"""Read-modify-write of JSON documents under optimistic concurrency: one, or several in one
transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from plumbing.gateway import Conflict, StateStore


def update(
    state: StateStore, key: str, change: Callable[[Any | None], Any | None], attempts: int = 20
) -> Any | None:
    """Apply `change` to the current value and write it back; retry when a writer raced us.

    `change` returns the new value, or None to leave the document as it is. A document that
    does not exist yet is created with a first-write, so two creators cannot both win.
    """
    for _ in range(attempts):
        current, etag = state.get(key)
        new = change(current)
        if new is None:
            return current
        if etag is None:
            if state.claim(key, new):
                return new
            continue
        try:
            state.put(key, new, etag=etag)
            return new
        except Conflict:
            continue
    raise Conflict(f"{key} changed under us {attempts} times in a row; try again")


def update_many(
    state: StateStore,
    keys: list[str],
    change: Callable[[str, Any], Any | None],
    deletes: list[str] | None = None,
    attempts: int = 20,
) -> None:
    """Apply `change(key, value)` to each of the documents that exist, and delete `deletes`, in
    one transaction (one bulk read, one write); read again and redo when a writer raced us.

    `change` returns the new value, or None to leave the document as it is. Documents that do
    not exist are left alone. Every change must be one that is harmless to make twice: after a
    lost race, Redis has made the transaction's other changes (plumbing.state_store)."""
    for _ in range(attempts):
        puts = {}
        for key, (value, etag) in state.get_many_with_etags(keys).items():
            new = change(key, value)
            if new is not None:
                puts[key] = (new, etag)
        if not puts and not deletes:
            return
        try:
            state.transact(puts, deletes or [])
            return
        except Conflict:
            continue
    raise Conflict(f"{len(keys)} documents changed under us {attempts} times in a row; try again")
