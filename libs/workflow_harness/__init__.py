"""A strict, in-process test harness and a history replayer for Dapr Python workflows (see
README.md)."""

from workflow_harness.clock import REPLAY_CLOCK_SHIFT
from workflow_harness.harness import (
    DEFAULT_START,
    ActivityFailed,
    Call,
    HarnessError,
    WorkflowFailed,
    WorkflowHarness,
)
from workflow_harness.histories import fetch_history, load_history, record_histories, save_history
from workflow_harness.replay import Replay, ReplayError, replay

__all__ = [
    "DEFAULT_START",
    "REPLAY_CLOCK_SHIFT",
    "ActivityFailed",
    "Call",
    "HarnessError",
    "Replay",
    "ReplayError",
    "WorkflowFailed",
    "WorkflowHarness",
    "fetch_history",
    "load_history",
    "record_histories",
    "replay",
    "save_history",
]
