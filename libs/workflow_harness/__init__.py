"""A deterministic, in-process test harness for Dapr Python workflows (see README.md)."""

from workflow_harness.harness import (
    DEFAULT_START,
    ActivityFailed,
    Call,
    HarnessError,
    WorkflowHarness,
)

__all__ = ["DEFAULT_START", "ActivityFailed", "Call", "HarnessError", "WorkflowHarness"]
