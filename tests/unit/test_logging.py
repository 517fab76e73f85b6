"""What the apps write to their logs: one line per record, whatever the text in it."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from plumbing.web import configure_logging


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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
