"""What the apps write to their logs: one line per record, whatever the text in it."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from plumbing.logs import bound, configure_logging
from plumbing.runtime import new_workflow_client, new_workflow_runtime


def test_control_characters_never_reach_a_text_log_line_raw(root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("notifier", stream, log_format="text")
    forged = "ok\n2026-01-01 00:00:00,000 notifier INFO forged: approved\x00\x07\u202edesrever"
    logging.getLogger("notifier.delivery").info("NOTIFY %s | %s", "customer", forged)
    written = stream.getvalue()
    (line,) = written.splitlines()
    assert line.endswith(
        "NOTIFY customer | ok\\n2026-01-01 00:00:00,000 notifier INFO forged: approved"
        "\\x00\\x07\\u202edesrever"
    )
    for raw in ("\x00", "\x07", "\u202e", "\r"):
        assert raw not in written


def test_the_workflow_sdk_s_lines_appear_once(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = io.StringIO()
    configure_logging("orders", stream, log_format="text")
    runtime, client = new_workflow_runtime(), new_workflow_client()  # as open_dapr makes them
    try:
        runtime.register_workflow(lambda ctx, _: None, name="probe_workflow")
        logging.getLogger("durabletask-worker").info("probe line from the worker")
        logging.getLogger("durabletask-client").info("probe line from the client")
    finally:
        client.close()
    ours = stream.getvalue()
    assert ours.count("Registering workflow 'probe_workflow' with runtime") == 1
    assert ours.count("orders INFO durabletask-worker: probe line from the worker") == 1
    assert ours.count("orders INFO durabletask-client: probe line from the client") == 1
    # The SDK's own handlers wrote to stderr: a second copy of each line, in its format.
    assert "probe" not in capsys.readouterr().err


def test_json_lines_escape_what_could_forge_a_line_and_read_back_the_same(
    root_logging: None,
) -> None:
    stream = io.StringIO()
    configure_logging("notifier", stream)
    forged = 'ok"}\n{"level": "INFO", "message": "approved"\x00\x07\x85\u2028\u202edesrever'
    logging.getLogger("notifier.delivery").warning("NOTIFY %s", forged)
    written = stream.getvalue()
    (line,) = written.splitlines()
    for raw in ("\x00", "\x07", "\x85", "\u2028", "\u202e", "\r"):
        assert raw not in written
    record = json.loads(line)
    assert record["message"] == f"NOTIFY {forged}"
    assert (record["level"], record["app"], record["logger"]) == (
        "WARNING",
        "notifier",
        "notifier.delivery",
    )
    assert record["time"].endswith("+00:00")


def test_json_lines_carry_the_order_instance_and_trace_they_are_about(root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("orders", stream)
    log = logging.getLogger("orders.workflows")
    tracer = TracerProvider().get_tracer("test")
    with bound(order_id="o-1", instance_id="order-o-1"), tracer.start_as_current_span("s") as span:
        log.info("inside")
        try:
            raise ValueError("boom\nforged line")
        except ValueError:
            log.exception("failed")
    log.info("outside")
    inside, failed, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    ids = span.get_span_context()
    assert inside["order_id"] == "o-1" and inside["instance_id"] == "order-o-1"
    assert inside["trace_id"] == format(ids.trace_id, "032x")
    assert inside["span_id"] == format(ids.span_id, "016x")
    assert "ValueError: boom\nforged line" in failed["exception"]
    assert failed["trace_id"] == inside["trace_id"]
    assert not {"order_id", "instance_id", "trace_id", "span_id"} & outside.keys()


def test_an_unknown_log_format_is_refused_with_the_choices(root_logging: None) -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT='yaml': choose one of json, text"):
        configure_logging("orders", io.StringIO(), log_format="yaml")
