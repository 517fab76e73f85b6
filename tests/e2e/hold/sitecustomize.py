"""Hold one workflow activity open in a real app, so an e2e test can kill the app while it runs.

Loaded by Python at start-up when this directory is on PYTHONPATH (a test puts it there for
one app process only). With E2E_HOLD_ACTIVITY=<name> and E2E_HOLD_DIR=<dir>, each run of that
activity writes `<dir>/running-<pid>-<n>.json` (its input) and then waits, doing nothing, until
`<dir>/release` exists; then the app's own activity runs unchanged. Nothing of the app is
replaced: the hold sits in the Dapr SDK's registration, before the app's function.

With E2E_FAIL_ACTIVITY=<name> instead, each run of that activity fails (raises, as an activity
whose dependency is down would) until `<dir>/release` exists; then the app's own activity runs.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

HOLD = os.environ.get("E2E_HOLD_ACTIVITY")
FAIL = os.environ.get("E2E_FAIL_ACTIVITY")
DIR = Path(os.environ.get("E2E_HOLD_DIR", "."))


def _install() -> None:
    from dapr.ext.workflow import WorkflowRuntime

    register = WorkflowRuntime.register_activity
    runs = itertools.count(1)

    def held(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(ctx: Any, data: Any) -> Any:
            marker = DIR / f"running-{os.getpid()}-{next(runs)}.json"
            marker.write_text(json.dumps(data))
            deadline = time.monotonic() + 300
            while not (DIR / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            return fn(ctx, data)

        return wrapper

    def failing(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(ctx: Any, data: Any) -> Any:
            if not (DIR / "release").exists():
                raise RuntimeError(f"injected failure of {FAIL} (tests/e2e/hold)")
            return fn(ctx, data)

        return wrapper

    def register_activity(self: Any, fn: Any, *, name: str | None = None) -> Any:
        if name == HOLD:
            fn = held(fn)
        if name == FAIL:
            fn = failing(fn)
        return register(self, fn, name=name)

    WorkflowRuntime.register_activity = register_activity  # type: ignore[method-assign]


if HOLD or FAIL:
    _install()
