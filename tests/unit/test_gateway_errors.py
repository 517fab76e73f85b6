"""Sidecar errors map onto the small error tree the rest of the code relies on."""

import grpc
import pytest

from plumbing.gateway import Conflict, GatewayError, NotFound, Transient, _translated


class RpcError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        (grpc.StatusCode.ABORTED, "failed saving state: possible etag mismatch", Conflict),
        (grpc.StatusCode.UNAVAILABLE, "connection refused", Transient),
        (grpc.StatusCode.ABORTED, "aborted by the server", Transient),
        (grpc.StatusCode.UNKNOWN, "actor type not registered", Transient),
        (
            grpc.StatusCode.UNKNOWN,
            "found in metadata but missing from state store (transient "
            "store read failure or partial save?)",
            Transient,
        ),
        (grpc.StatusCode.NOT_FOUND, "no such instance", NotFound),
        (grpc.StatusCode.INTERNAL, "something else", GatewayError),
    ],
)
def test_sidecar_errors_become_our_errors(
    code: grpc.StatusCode, details: str, expected: type
) -> None:
    with pytest.raises(expected) as caught, _translated("save state k"):
        raise RpcError(code, details)
    assert type(caught.value) is expected and str(caught.value).startswith("save state k:")


def test_a_status_read_that_races_the_save_is_tried_again() -> None:
    from types import SimpleNamespace

    from plumbing.gateway import DaprWorkflows

    class Client:
        calls = 0

        def get_workflow_state(self, instance_id: str, fetch_payloads: bool) -> object:
            Client.calls += 1
            if Client.calls < 3:
                raise RpcError(
                    grpc.StatusCode.UNKNOWN,
                    "missing from state store (transient store read failure or partial save?)",
                )
            return SimpleNamespace(name="wf", runtime_status=SimpleNamespace(name="RUNNING"))

    state = DaprWorkflows(Client()).state("wf-1")
    assert state is not None and state.status == "RUNNING" and Client.calls == 3
