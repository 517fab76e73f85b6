"""What the gateway makes of Dapr's workflow state: aware times, custom status always."""

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb
import pytest
from dapr.ext.workflow import DaprWorkflowClient

from plumbing.gateway import RAW_CLIENT, DaprWorkflows, SdkMismatch
from plumbing.history import history_row
from workflow_harness import load_history


class Client:
    """Answers like the SDK: custom status, input and output only with fetch_payloads."""

    def __init__(self, created: datetime, updated: datetime) -> None:
        self.created, self.updated = created, updated
        self.asked: list[bool] = []

    def get_workflow_state(self, instance_id: str, fetch_payloads: bool) -> Any:
        self.asked.append(fetch_payloads)
        return SimpleNamespace(
            name="order_workflow",
            runtime_status=SimpleNamespace(name="RUNNING"),
            created_at=self.created,
            last_updated_at=self.updated,
            serialized_custom_status='"awaiting vp approval"' if fetch_payloads else None,
            serialized_input='{"order": {}}' if fetch_payloads else None,
            serialized_output=None,
            failure_details=None,
        )


def test_custom_status_comes_without_asking_for_payloads() -> None:
    client = Client(datetime(2026, 11, 23, 10), datetime(2026, 11, 23, 11))
    state = DaprWorkflows(client).state("order-o-1")
    assert state is not None and state.custom_status == '"awaiting vp approval"'
    assert state.input is None and state.output is None
    full = DaprWorkflows(client).state("order-o-1", payloads=True)
    assert full is not None and full.input == '{"order": {}}'


def test_naive_times_are_utc_and_year_one_is_not_set() -> None:
    started = DaprWorkflows(Client(datetime(2026, 11, 23, 10), datetime(1, 1, 1))).state("wf")
    assert started is not None
    assert started.created_at == datetime(2026, 11, 23, 10, tzinfo=UTC)
    assert started.updated_at is None
    pending = DaprWorkflows(Client(datetime(1, 1, 1), datetime(1970, 1, 1))).state("wf")
    assert pending is not None and pending.created_at is None and pending.updated_at is None


def recorded(path: str) -> list[Any]:
    return load_history(Path(__file__).resolve().parents[1] / "histories" / path)


def test_the_sdk_client_still_holds_the_durabletask_client_history_reads() -> None:
    """The history read relies on a private attribute of the SDK's client: an SDK upgrade
    that moves it fails here, not in a diagnosis in production. Building the client needs
    no sidecar."""
    client = DaprWorkflowClient(host="127.0.0.1", port="1")
    raw = getattr(client, RAW_CLIENT, None)
    assert raw is not None and callable(raw.get_instance_history)


def test_a_client_without_it_is_a_clear_error_not_a_silent_fallback() -> None:
    client = SimpleNamespace(get_instance_history=lambda instance_id: [])
    with pytest.raises(SdkMismatch, match=r"Dapr Python SDK 1\.19 \(dapr\[workflow\]==1\.19\.0"):
        DaprWorkflows(client).history("wf")


def test_history_times_are_rfc3339_with_z() -> None:
    events = recorded("order_workflow/escalation_followed_then_vp_approves.json")
    raw = SimpleNamespace(get_instance_history=lambda instance_id: events)
    shown = DaprWorkflows(SimpleNamespace(**{RAW_CLIENT: raw})).history("wf")
    assert shown[1]["type"] == "EXECUTION_STARTED" and shown[1]["name"] == "order_workflow"
    assert shown[0]["timestamp"] == "2026-11-23T14:47:22.349752Z"
    assert all(r["timestamp"].endswith("Z") for r in shown)


def test_history_rows_say_what_each_wait_is_for_and_when_timers_are_due() -> None:
    rows = [
        history_row(e) for e in recorded("order_workflow/escalation_followed_then_vp_approves.json")
    ]
    timers = [r for r in rows if r["type"] == "TIMER_CREATED"]
    assert [(r["event_id"], r.get("waits_for"), r["fire_at"]) for r in timers] == [
        (4, None, "2026-11-23T14:48:52.457038Z"),
        (5, "approval_outcome", None),
        (6, "approval_stage", None),
        (7, "approval_stage", None),
    ]
    raised = [r["name"] for r in rows if r["type"] == "EVENT_RAISED"]
    assert raised == ["approval_stage", "approval_outcome"]
    done = next(r for r in rows if r["type"] == "TASK_COMPLETED")
    assert done["task_scheduled_id"] == 1 and done["failure"] is None


def test_a_fired_timer_names_its_timer_and_a_step_its_version_marks() -> None:
    rows = [history_row(e) for e in recorded("approval_workflow/expired.json")]
    fired = [r for r in rows if r["type"] == "TIMER_FIRED"]
    assert fired and all(isinstance(r["timer_id"], int) and r["fire_at"] for r in fired)
    marked = pb.HistoryEvent(eventId=-1, workflowStarted=pb.WorkflowStartedEvent())
    marked.workflowStarted.version.patches.append("cancel")
    assert history_row(marked)["patches"] == ["cancel"]
