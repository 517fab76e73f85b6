"""Issue 11, "A new user's first hour": what a newcomer meets when input is odd or the stack
hiccups, on the real stack, in through the topics and HTTP only."""

from __future__ import annotations

import json
import os
import secrets
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.flow import Flow
from tests.fakes import bearer
from tests.stack import eventually, unique

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


def test_apps_are_not_ready_while_redis_is_down_and_ready_again_after(
    flow: Flow, stack: Stack
) -> None:
    redis = stack.supervisor.watch("redis").proc
    redis.stop()  # SIGTERM: Redis writes its append-only file and exits; nothing restarts it
    try:
        for app in stack.apps.values():
            resp = flow.http.get(f"{app.app_url}/readyz")
            assert resp.status_code == 503, (app.app_id, resp.text)
            problems = resp.json()["problems"]
            broker = problems.pop("pub/sub pubsub")
            assert broker.startswith("a probe message to its broker failed: "), broker
            if stack.state_store == "redis":  # the state store is that Redis too
                assert problems.pop("state store statestore").startswith("a read failed: ")
            assert problems == {}, problems
    finally:
        stack.restart("redis")
    for app in stack.apps.values():
        eventually(
            lambda app=app: flow.http.get(f"{app.app_url}/readyz").status_code == 200,
            what=f"{app.app_id} to be ready again",
        )
    # Each Redis client in the sidecars redials on its own schedule: publishing may still fail
    # (503, worth retrying) for a moment after the state store answers again.
    order = {"order_id": unique("o"), "customer_id": "c-1", "amount": "30", "currency": "EUR"}
    eventually(
        lambda: flow.http.post(f"{flow.orders}/orders", json=order).status_code == 202,
        what="the orders app to take an order again",
    )
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


def test_control_characters_are_refused_and_never_split_a_log_line(
    flow: Flow, stack: Stack
) -> None:
    marker = unique("forged")
    refused = flow.decide(unique("o"), reason=f"no\n{marker} INFO approved\x00\x07\u202e")
    assert refused.status_code == 422
    assert refused.json()["detail"] == (
        "reason: must be plain text without control characters (line breaks and tabs "
        "included) or bidirectional overrides; found U+000A (line feed) at character 3"
    )
    # Over the topic: control characters in the free text and a newline in the CloudEvent id.
    order_id = unique("o")
    forged_line = f"\n2026-01-01 00:00:00,000 orders INFO {marker}: approved"
    data = {
        "order_id": order_id,
        "customer_id": f"c-1\x00\x07\u202e{marker}",
        "currency": "EUR",
        "amount": "40.00",
        "placed_at": "2026-11-23T10:00:00Z",
    }
    envelope = {"specversion": "1.0", "id": order_id + forged_line, "source": "e2e", "type": "t"}
    flow.publish(json.dumps(envelope | {"data": data}).encode(), "orders")
    (kept,) = eventually(
        lambda: [
            i
            for i in flow.http.get(f"{flow.orders}/deadletters", params={"topic": "orders"}).json()
            if marker in i["event_id"]
        ],
        what="the order with control characters in the orders app's dead letters",
    )
    assert kept["reason"] == (
        "OrderPlaced is invalid: customer_id: must be plain text without control characters "
        "(line breaks and tabs included) or bidirectional overrides; found U+0000 (NUL) at "
        "character 4"
    )
    assert flow.order(order_id) is None
    # The notifier drops an unsigned approval request before reading it, and logs its id.
    request = {"specversion": "1.0", "id": unique("r") + forged_line, "source": "e2e", "type": "t"}
    flow.publish(json.dumps(request | {"data": {}}).encode(), "approval-requests")
    eventually(
        lambda: marker in app_log(stack, "notifier"), what="the notifier to log the request's id"
    )
    for app in ("orders", "notifier"):
        log = app_log(stack, app)
        assert marker in log  # the event id was logged, escaped onto its own line
        assert not [line for line in log.splitlines() if line.startswith("2026-01-01")]
        for raw in ("\x00", "\x07", "\u202e"):
            assert raw not in log, app


def test_an_oversized_chunked_body_gets_the_same_413_audited(flow: Flow) -> None:
    def audit(**params: str) -> httpx.Response:
        resp = flow.http.get(f"{flow.orders}/audit", params=params)
        assert resp.status_code == 200, resp.text
        return resp

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        yield b'{"order_id": "big", "customer_id": "c-1", "items": ['
        for _ in range(100):
            yield b'{"sku": "' + b"x" * 1000 + b'", "quantity": 1},'
        yield b"]}"

    last_seq = audit(limit="1").headers["x-audit-last-seq"]
    # Refusals of unidentified callers are audited up to a burst per client address, which
    # earlier tests spent for 127.0.0.1: this upload comes from a loopback address of its own.
    octets = secrets.token_bytes(3)
    source = httpx.HTTPTransport(local_address="127." + ".".join(str(1 + b % 254) for b in octets))
    with httpx.Client(transport=source, timeout=30) as uploader:
        for content in (chunks(), b"".join(chunks())):  # chunked, then with a Content-Length
            resp = uploader.post(
                f"{flow.orders}/orders",
                content=content,
                headers={"content-type": "application/json", **bearer("operator")},
            )
            assert resp.status_code == 413, resp.text
            assert resp.json() == {"detail": "request body is larger than 65536 bytes"}
    refused = audit(after_seq=last_seq, action="POST /orders", outcome="refused 413").json()
    assert [r["outcome"] for r in refused] == ["refused 413: body larger than 65536 bytes"] * 2


def test_the_same_order_id_with_other_content_is_refused_saying_what_differs(flow: Flow) -> None:
    order_id = unique("o")
    order = {"order_id": order_id, "customer_id": "c-1", "amount": "40", "currency": "EUR"}
    for _ in range(2):  # an identical duplicate is harmless
        assert flow.http.post(f"{flow.orders}/orders", json=order).status_code == 202
    other = flow.http.post(f"{flow.orders}/orders", json=order | {"amount": "45"})
    assert other.status_code == 409
    assert "(amount 45.00, was 40.00)" in other.json()["detail"]
    flow.finished(order_id)
    # Over the topic: dead-lettered with the reason, and audited.
    flow.publish(flow.order_message("46.00", customer="c-2", order_id=order_id), "orders")
    (kept,) = eventually(
        lambda: [
            i
            for i in flow.http.get(f"{flow.orders}/deadletters", params={"topic": "orders"}).json()
            if i["event_id"] == order_id
        ],
        what="the conflicting duplicate in the orders app's dead letters",
    )
    reason = "conflicting duplicate: customer_id c-2, was c-1; amount 46.00, was 40.00"
    assert kept["reason"] == reason
    (audited,) = flow.http.get(
        f"{flow.orders}/audit", params={"target": order_id, "action": "deliver orders"}
    ).json()
    assert audited["outcome"] == f"refused: {reason}"


def test_the_workflow_sdk_s_log_lines_appear_once(stack: Stack) -> None:
    for app in ("orders", "approvals"):
        log = app_log(stack, app)
        starts = log.count("Started server process")  # a test may have restarted the app
        assert starts >= 1, app
        assert log.count("Starting gRPC worker that connects to") == starts, app
        assert log.count("Registering workflow") == starts, app
        # In our format: every line the app wrote is one JSON object, the SDK's too (devstack
        # marks a restart in the log with a line of its own).
        records = [json.loads(ln) for ln in log.splitlines() if not ln.startswith("---- devstack")]
        assert {r["app"] for r in records} == {app}
        assert any(
            r["logger"] == "durabletask-worker" and "Starting gRPC worker" in r["message"]
            for r in records
        )
