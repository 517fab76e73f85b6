"""Log lines: one JSON object per line (the default), or the older text lines (LOG_FORMAT=text).

Each JSON line has time, level, app, logger and message, and, where known, the order_id and
workflow instance_id the line is about (`bound` sets them for a delivery or an activity) and
the trace_id and span_id of the current OpenTelemetry span, so a line leads to its trace.
Text from outside can neither break a line nor forge one: JSON escapes control characters,
and the characters it would leave raw (DEL, C1 controls, line separators, bidi overrides) are
written as \\u escapes too. A traceback goes in the `exception` field of the same line.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from opentelemetry import trace

from contracts.text import UNSAFE, escaped

FORMATS = ("json", "text")
# What the current delivery or activity is about; read by every record made meanwhile.
_about: ContextVar[dict[str, str] | None] = ContextVar("log_about", default=None)


@contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Add these ids (order_id, instance_id) to every log line made inside the block."""
    token = _about.set({**(_about.get() or {}), **{k: v for k, v in ids.items() if v}})
    try:
        yield
    finally:
        _about.reset(token)


def context_fields() -> dict[str, str]:
    """The ids of the current delivery or activity and of the current span, where known."""
    fields = dict(_about.get() or {})
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        fields["trace_id"] = format(span.trace_id, "032x")
        fields["span_id"] = format(span.span_id, "016x")
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, app_id: str) -> None:
        super().__init__()
        self.app_id = app_id

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "app": self.app_id,
            "logger": record.name,
            "message": record.getMessage(),
            **context_fields(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        text = json.dumps(line, ensure_ascii=False, default=str)
        # JSON escapes C0 controls itself; the rest of UNSAFE is legal raw JSON, so escape it.
        return UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class OneLineFormatter(logging.Formatter):
    """Writes control characters and bidi overrides in a record's line as escapes, so text from
    outside (an event id, a sidecar's error) can neither start a forged line nor make the log
    binary nor reverse the console. A traceback stays on its own lines below."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escaped(super().formatMessage(record))


def configure_logging(app_id: str, stream: IO[str] | None = None, log_format: str = "json") -> None:
    """One line per record, with the app id, on stderr (or `stream`)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(app_id, log_format))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    # httpx logs each request at INFO; only /readyz uses it, three requests per probe.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def formatter(app_id: str, log_format: str) -> logging.Formatter:
    """The formatter for LOG_FORMAT (json or text)."""
    if log_format == "text":
        return OneLineFormatter(f"%(asctime)s {app_id} %(levelname)s %(name)s: %(message)s")
    if log_format == "json":
        return JsonFormatter(app_id)
    raise ValueError(f"LOG_FORMAT={log_format!r}: choose one of {', '.join(FORMATS)}")


def about_activity(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """`fn`, an activity, with its log lines bound to its workflow instance and order."""

    @functools.wraps(fn)
    def run(ctx: Any, data: Any) -> Any:
        order_id = data.get("order_id") if isinstance(data, dict) else None
        with bound(order_id=order_id, instance_id=getattr(ctx, "workflow_id", None)):
            return fn(ctx, data)

    return run
