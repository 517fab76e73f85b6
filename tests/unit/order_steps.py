"""The order workflow's steps as the tests read them, whichever way they ran.

Since the lean release, consecutive steps run as one `advance_order` activity whose input lists
them; before it, each was an activity of its own. The tests script and read steps by the
activity each was (PUBLISH_STATUS, FULFIL_ORDER, ...), so one test checks both.
"""

from __future__ import annotations

from typing import Any

from orders.workflows import ADVANCE_ORDER, STEP_ACTIVITIES
from workflow_harness import Call, WorkflowHarness


def with_steps(activities: dict[str, Any]) -> dict[str, Any]:
    """The scripts, plus `advance_order` running each of its steps by its activity's script
    (a script that raises fails the whole activity, as the real one would). The same dict,
    so a test that swaps a script later swaps it inside `advance_order` too."""

    def advance(steps: list[dict[str, Any]]) -> None:
        for step in steps:
            script = activities[STEP_ACTIVITIES[step["kind"]]]
            if callable(script):
                script(step["data"])

    activities[ADVANCE_ORDER] = advance
    return activities


def calls_to(h: WorkflowHarness, name: str) -> list[Call]:
    """The calls of activity `name`, each step of an `advance_order` counted as a call of the
    activity it was before (the attempt and time are the `advance_order` call's)."""
    found = []
    for call in h.calls:
        if call.name == ADVANCE_ORDER:
            found += [
                Call(STEP_ACTIVITIES[s["kind"]], s["data"], call.at, call.attempt)
                for s in call.input
                if STEP_ACTIVITIES[s["kind"]] == name
            ]
        elif call.name == name:
            found.append(call)
    return found
