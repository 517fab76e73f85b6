"""Sidecar errors map onto the small error tree the rest of the code relies on."""

import logging

import grpc
import pytest

from plumbing.gateway import (
    Conflict,
    DaprPublisher,
    GatewayError,
    NotFound,
    Transient,
    _translated,
)
from plumbing.state_store import DaprStateStore


class RpcError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


class InactiveRpcError(grpc.RpcError):
    """Shaped like grpc's _InactiveRpcError (what the SDK raises): str() is a multi-line repr
    with the debug string; details() is the sidecar's sentence."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def __str__(self) -> str:
        return (
            "<_InactiveRpcError of RPC that terminated with:\n"
            f'\tstatus = {self._code}\n\tdetails = "{self._details}"\n'
            f'\tdebug_error_string = "{self._code.name}:{self._details}"\n>'
        )


REDIS_PAUSED = (
    "error when publishing to topic orders in pubsub pubsub: redis streams: "
    "error from publish: i/o timeout"
)


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
        (grpc.StatusCode.INTERNAL, REDIS_PAUSED, Transient),
        (
            grpc.StatusCode.INTERNAL,
            "failed saving state in state store statestore: failed to set key orders||k: "
            "ERR user_script:14: failed to set key orders||k script: d908b9, on @user_script:14.",
            Conflict,
        ),
        (
            grpc.StatusCode.INTERNAL,
            "failed saving state in state store statestore: failed to set key orders||k: "
            "i/o timeout",
            Transient,
        ),
        (  # state.postgresql v2: a first write that found the key taken
            grpc.StatusCode.INTERNAL,
            "failed saving state in state store statestore: no item was updated",
            Conflict,
        ),
    ],
)
def test_sidecar_errors_become_our_errors(
    code: grpc.StatusCode, details: str, expected: type
) -> None:
    with pytest.raises(expected) as caught, _translated("save state k"):
        raise RpcError(code, details)
    assert type(caught.value) is expected and str(caught.value).startswith("save state k")
    assert caught.value.detail == details


class Client:
    """A DaprClient whose calls fail as the sidecar makes them fail."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def publish_event(self, **_: object) -> None:
        raise self.error

    def save_state(self, *_: object, **__: object) -> None:
        raise self.error


def test_a_failure_names_the_component_says_retry_and_keeps_the_grpc_repr_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from contracts.messages import OrderStatusChanged

    message = OrderStatusChanged(order_id="o-1", status="received", at="2026-01-05T09:00:00Z")
    for code, kind in ((grpc.StatusCode.INTERNAL, Transient), (grpc.StatusCode.UNKNOWN, None)):
        details = REDIS_PAUSED if kind else "the component said no"
        publisher = DaprPublisher(Client(InactiveRpcError(code, details)), "pubsub", "orders")
        caplog.clear()
        with pytest.raises(GatewayError) as caught, caplog.at_level(logging.WARNING):
            publisher.publish("order-status", message)
        said = str(caught.value)
        assert "_InactiveRpcError" not in said and "debug_error_string" not in said
        assert details not in said
        assert "pub/sub component 'pubsub'" in said and "worth retrying" in said
        assert said.startswith(
            "publish order-approvals.OrderStatusChanged.v1 to topic order-status"
        )
        assert (type(caught.value) is Transient) == (kind is Transient)
        (logged,) = caplog.records
        assert details in logged.getMessage() and "\n" not in logged.getMessage()


def test_a_claim_lost_to_an_earlier_write_is_false_but_a_paused_store_is_retried() -> None:
    taken = InactiveRpcError(
        grpc.StatusCode.INTERNAL,
        "failed saving state in state store statestore: failed to set key orders||k: "
        "ERR user_script:14: failed to set key orders||k script: d9, on @user_script:14.",
    )
    assert DaprStateStore(Client(taken), "statestore").claim("k", {}) is False
    paused = InactiveRpcError(
        grpc.StatusCode.INTERNAL,
        "failed saving state in state store statestore: failed to set key orders||k: i/o timeout",
    )
    # Not a duplicate: answering False here would drop a new order as if it were one.
    with pytest.raises(Transient, match="state store 'statestore' is unavailable"):
        DaprStateStore(Client(paused), "statestore").claim("k", {})


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
