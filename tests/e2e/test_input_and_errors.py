"""Issue 11, "A new user's first hour": what a newcomer meets when input is odd or the stack
hiccups, on the real stack, in through the topics and HTTP only."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from devstack.stack import Stack
from tests.e2e.flow import Flow
from tests.fakes import bearer
from tests.stack import unique

pytestmark = pytest.mark.e2e


@contextmanager
def paused(stack: Stack, name: str) -> Iterator[None]:
    """SIGSTOP one process of the stack (a dependency that stops answering), then SIGCONT."""
    (proc,) = [p for p in stack.procs if p.name == name]
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def app_log(stack: Stack, app: str) -> str:
    return (stack.run_dir / "logs" / f"{app}.log").read_text(errors="replace")


def test_a_dependency_that_stops_answering_is_named_and_worth_retrying(
    flow: Flow, stack: Stack
) -> None:
    order = {"order_id": unique("o"), "customer_id": "c-1", "amount": "40", "currency": "EUR"}
    logged_before = len(app_log(stack, "orders"))
    with paused(stack, "redis"):
        resp = flow.http.post(f"{flow.orders}/orders", json=order, timeout=90)
    assert resp.status_code == 503, resp.text
    said = resp.json()["detail"]
    assert "the Dapr sidecar or its" in said and "worth retrying" in said
    for raw in ("_InactiveRpcError", "debug_error_string", "StatusCode.", "\n"):
        assert raw not in said
    assert resp.headers["retry-after"] == "5"
    assert "i/o timeout" in app_log(stack, "orders")[logged_before:]  # logged, not returned
    again = flow.http.post(f"{flow.orders}/orders", json=order)
    assert again.status_code == 202, again.text
    flow.finished(order["order_id"])


def test_malformed_json_is_said_in_words(flow: Flow) -> None:
    json_body = {"content-type": "application/json"}
    for body, says in (
        (b'{"order_id": "o-1",', "the request body is not valid JSON: Expecting property name"),
        (b'[{"order_id": "o-1"}]', "the request body must be a JSON object, not an array"),
    ):
        resp = flow.http.post(f"{flow.orders}/orders", content=body, headers=json_body)
        assert resp.status_code == 422 and resp.json()["detail"].startswith(says), resp.text
    decision = flow.http.post(
        f"{flow.approvals}/approvals/{unique('o')}/decisions",
        content=b"[]",
        headers={**json_body, **bearer("manager")},
    )
    assert decision.status_code == 422
    assert decision.json()["detail"] == "the request body must be a JSON object, not an array"
