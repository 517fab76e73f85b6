"""Workflow histories as files: read them from a sidecar, save them, load them for replay.

A history is the list of durabletask `HistoryEvent` protobufs that Dapr keeps per instance
(what `DaprWorkflowClient.get_workflow_history` summarises). A file holds one instance's, as
protobuf JSON, with the workflow's name, the instance id and how it ended at the top for the
reader:

    {"workflow": "order_workflow", "instance_id": "order-o-1", "status": "COMPLETED",
     "events": [{"eventId": -1, "timestamp": "...", "workflowStarted": {}}, ...]}
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import dapr.ext.workflow._durabletask.internal.protos as pb
from dapr.ext.workflow._durabletask.client import TaskHubGrpcClient
from google.protobuf import json_format

from workflow_harness.engine import STATUS

_API_TOKEN_HEADER = "dapr-api-token"


def save_history(events: Sequence[pb.HistoryEvent], path: str | Path) -> Path:
    """Write one instance's history to `path` (folders are created)."""
    start = next((e for e in events if e.HasField("executionStarted")), None)
    end = next((e for e in events if e.HasField("executionCompleted")), None)
    document = {
        "workflow": start.executionStarted.name if start else None,
        "instance_id": start.executionStarted.workflowInstance.instanceId if start else None,
        "status": STATUS.get(end.executionCompleted.workflowStatus, "?") if end else "RUNNING",
        "events": [json_format.MessageToDict(e) for e in events],
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=1) + "\n")
    return target


def load_history(path: str | Path) -> list[pb.HistoryEvent]:
    """Read a history saved by `save_history` (or a bare JSON list of events)."""
    document: Any = json.loads(Path(path).read_text())
    raw = document["events"] if isinstance(document, dict) else document
    return [json_format.ParseDict(event, pb.HistoryEvent()) for event in raw]


def fetch_history(
    instance_id: str, *, address: str, api_token: str | None = None
) -> list[pb.HistoryEvent]:
    """An instance's history, read from the sidecar at `address` (host:port, its gRPC API)."""
    with _client(address, api_token) as client:
        return list(client.get_instance_history(instance_id))


def record_histories(
    directory: str | Path,
    *,
    address: str,
    api_token: str | None = None,
    workflows: Iterable[str] | None = None,
    finished_only: bool = True,
) -> list[Path]:
    """Save the history of every instance the sidecar's app hosts (of `workflows`, if given;
    finished ones only, unless told otherwise) as `directory/<workflow>/<instance>.json`.

    Needs a Dapr runtime of 1.17 or newer and an actor state store that can list its keys."""
    wanted = set(workflows) if workflows is not None else None
    saved: list[Path] = []
    with _client(address, api_token) as client:
        for instance_id in _instance_ids(client):
            events = list(client.get_instance_history(instance_id))
            start = next((e for e in events if e.HasField("executionStarted")), None)
            if start is None or (wanted is not None and start.executionStarted.name not in wanted):
                continue
            if finished_only and not any(e.HasField("executionCompleted") for e in events):
                continue
            file = f"{re.sub(r'[^A-Za-z0-9._-]', '_', instance_id)}.json"
            saved.append(save_history(events, Path(directory) / start.executionStarted.name / file))
    return saved


def _client(address: str, api_token: str | None) -> TaskHubGrpcClient:
    metadata = [(_API_TOKEN_HEADER, api_token)] if api_token else None
    return TaskHubGrpcClient(host_address=address, metadata=metadata)


def _instance_ids(client: TaskHubGrpcClient) -> Iterable[str]:
    token: str | None = None
    while True:
        page = client.list_instance_ids(page_size=1000, continuation_token=token)
        yield from page.instanceIds
        token = page.continuationToken or None
        if not token or not page.instanceIds:
            return
