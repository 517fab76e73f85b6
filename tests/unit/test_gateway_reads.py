"""What the gateway makes of Dapr's workflow state: aware times, custom status always."""

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from plumbing.gateway import DaprWorkflows


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


def test_history_times_are_rfc3339_with_z() -> None:
    event = SimpleNamespace(
        event_id=0,
        timestamp=datetime(2026, 11, 23, 10, 0, 0, 250000),
        event_type=SimpleNamespace(name="EXECUTION_STARTED"),
        name="order_workflow",
        task_scheduled_id=None,
        failure_details=None,
    )
    client = SimpleNamespace(get_workflow_history=lambda instance_id: [event])
    (shown,) = DaprWorkflows(client).history("wf")
    assert shown["timestamp"] == "2026-11-23T10:00:00.250000Z"
