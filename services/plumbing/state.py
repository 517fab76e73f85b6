"""Read-modify-write of one JSON document under optimistic concurrency."""

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
