"""The Dapr scheduler's Jobs API for this app: a job fires once per schedule, to one replica of
the app (the scheduler picks one of the sidecars connected under the app id), at
`POST /job/<name>` on the app, with the job's data as its JSON body; jobs live in the
scheduler's etcd, so they outlast restarts of the apps and of the scheduler itself."""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, json_format, struct_pb2

from plumbing.gateway import NotFound, _translated

VIA = "the Dapr sidecar or its scheduler"


def _packed(data: dict[str, Any]) -> any_pb2.Any:
    """JSON data as the sidecar hands it back to the app as JSON: a google.protobuf.Value."""
    value = struct_pb2.Value()
    json_format.ParseDict(data, value)
    packed = any_pb2.Any()
    packed.Pack(value)
    return packed


def _unpacked(packed: Any) -> dict[str, Any]:
    value = struct_pb2.Value()
    if packed is None or not packed.Unpack(value):
        return {}
    found = json_format.MessageToDict(value)
    return found if isinstance(found, dict) else {}


class DaprScheduler:
    """Jobs through the app's DaprClient (the stable Jobs API of Dapr 1.18)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def schedule(self, name: str, schedule: str, data: dict[str, Any]) -> None:
        """Create or replace the job `name`."""
        from dapr.clients.grpc._jobs import Job

        with _translated(f"schedule job {name}", VIA):
            self._client.schedule_job(
                Job(name=name, schedule=schedule, data=_packed(data)), overwrite=True
            )

    def get(self, name: str) -> dict[str, Any] | None:
        """The job's schedule and data, or None when there is no such job."""
        try:
            with _translated(f"get job {name}", VIA):
                job = self._client.get_job(name)
        except NotFound:
            return None
        return {"schedule": job.schedule, "data": _unpacked(job.data)}

    def delete(self, name: str) -> None:
        try:
            with _translated(f"delete job {name}", VIA):
                self._client.delete_job(name)
        except NotFound:
            return
