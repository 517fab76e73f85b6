"""What the apps write to their logs: one line per record, whatever the text in it."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from plumbing.runtime import new_workflow_client, new_workflow_runtime
from plumbing.web import configure_logging

SDK_LOGGERS = ("WorkflowRuntime", "DaprWorkflowClient", "durabletask-worker", "durabletask-client")


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers, the SDK adds its own: put all back."""
    loggers = [logging.getLogger(n) for n in ("", "httpx", *SDK_LOGGERS)]
    saved = [(lg, lg.handlers[:], lg.level) for lg in loggers]
    logging.getLogger().handlers.clear()  # pytest's own, which basicConfig(force) would close
    yield
    for lg, handlers, level in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)


def test_control_characters_never_reach_a_log_line_raw(root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("notifier", stream)
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
    configure_logging("orders", stream)
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
