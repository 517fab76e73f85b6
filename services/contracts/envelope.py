"""Wrap messages in CloudEvents 1.0 envelopes and unwrap them, with the business id as `id`.

Errors: BadEnvelope (not a CloudEvent at all), BadPayload (a CloudEvent whose data does not
fit the message model) and its kind Unverified (a message that must be signed is not, or not by
a trusted key); all are permanent: a subscriber answers DROP. `load_json` raises TooDeep (a
ValueError) for JSON nested deeper than MAX_DEPTH, before parsing it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import ValidationError

from contracts.messages import Message, MessageLimits, describe_errors
from contracts.signing import BadSignature, Signer, Verifier

M = TypeVar("M", bound=Message)
_FORMAT = JSONFormat()
CONTENT_TYPE = "application/cloudevents+json"
# Our messages nest four deep (envelope, data, items, item). The bound is checked before
# parsing: json.loads recurses once per level and would raise RecursionError near 1,000.
MAX_DEPTH = 32
# A JSON string (possessive, so an unterminated one costs one pass), a bare quote, a bracket.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*+"|["\[\]{}]', re.DOTALL)
SPECVERSION = "1.0"
# An RFC 3339 time as publishers write it (Python's isoformat, Go's RFC3339 up to microseconds):
# datetime.fromisoformat reads it exactly as the library's ISO 8601 parser does.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")


class TooDeep(ValueError):
    """JSON nested deeper than MAX_DEPTH."""


class BadEnvelope(ValueError):
    """The body is not a CloudEvents 1.0 JSON envelope."""


class BadPayload(ValueError):
    """The envelope's data does not validate against the expected message model."""

    def __init__(self, message: str, event_id: str = "?") -> None:
        super().__init__(message)
        self.event_id = event_id


class Unverified(BadPayload):
    """A message that must be signed is unsigned, signed by an unknown key, or altered."""


def wrap(message: Message, source: str, signer: Signer | None = None) -> bytes:
    """Serialize `message` as a structured-mode CloudEvent whose id is the business id, signed
    when a signer is given."""
    data = message.model_dump(mode="json")
    attrs = {
        "id": message.message_id,
        "source": source,
        "type": message.event_type(),
        "datacontenttype": "application/json",
    }
    if signer is not None:
        attrs |= signer.sign(attrs["type"], attrs["id"], data)
    return _FORMAT.write(CloudEvent(attrs, data))


def nesting_depth(text: str, stop_above: int = MAX_DEPTH) -> int:
    """How deeply arrays and objects nest in JSON `text`; counting stops above `stop_above`.

    Exact for valid JSON (brackets inside strings do not count); for invalid JSON it is exact
    up to the first syntax error, which is as far as a parser would recurse.
    """
    depth = deepest = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token == '"':  # a string that never ends: a parser stops here
            break
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > stop_above:
                break
        elif token in ("]", "}"):
            depth = max(depth - 1, 0)
    return deepest


def load_json(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads of UTF-8 JSON (RFC 8259), refusing nesting deeper than `max_depth` (TooDeep)
    before it parses; other problems raise ValueError."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    # Nesting never exceeds the number of opening brackets (those in strings count too, so
    # this over-counts): most bodies need no scan at all.
    if text.count("{") + text.count("[") > max_depth and nesting_depth(text, max_depth) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    return json.loads(text)


def envelope(body: bytes) -> dict[str, Any]:
    """Parse and validate the CloudEvent attributes of `body`; data stays raw."""
    try:
        raw = load_json(body)
    except TooDeep as exc:
        raise BadEnvelope(f"body refused: {exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEnvelope(f"body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BadEnvelope("body is not a JSON object")
    try:
        event = _event(raw, body)
    except Exception as exc:  # the library raises several types for one meaning
        raise BadEnvelope(f"not a CloudEvents 1.0 envelope: {exc}") from None
    attrs = dict(event.get_attributes())
    attrs["data"] = event.get_data()
    return attrs


def _event(raw: dict[str, Any], body: bytes) -> BaseCloudEvent:
    """What the library's JSON format reads from `body`, built from `raw`, the body already
    parsed: reading would parse it again, and the library's ISO 8601 parser costs more than
    the rest of the envelope. Anything but the usual (a 1.0 event with JSON data and an
    RFC 3339 time or none) is left to the library itself."""
    stamp = raw.get("time")
    when = _rfc3339(stamp) if isinstance(stamp, str) else None
    if (
        raw.get("specversion", SPECVERSION) != SPECVERSION
        or "data_base64" in raw
        or ("time" in raw and when is None)
    ):
        return _FORMAT.read(None, body)
    attrs = {k: v for k, v in raw.items() if k != "data"}
    if when is not None:
        attrs["time"] = when
    return CloudEvent(attrs, raw.get("data"))


def _rfc3339(text: str) -> datetime | None:
    """`text` as the library's parser reads it, when it is an RFC 3339 time; else None."""
    if _RFC3339.fullmatch(text) is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # well formed, but no such time (February 30th)
        return None


def unwrap(
    body: bytes,
    model: type[M],
    limits: MessageLimits | None = None,
    verifier: Verifier | None = None,
    signed_if: Callable[[M], bool] | None = None,
) -> tuple[str, M]:
    """Return (CloudEvent id, parsed message); raise BadEnvelope, BadPayload or Unverified.

    With a verifier, the message must carry a valid signature by one of its keys; with
    `signed_if` too, only a message for which it is true (it is checked once the message
    validates, so it may rely on the model's types)."""
    attrs = envelope(body)
    event_id = str(attrs["id"])
    data = attrs.get("data")
    if isinstance(data, (str, bytes)):
        try:
            data = load_json(data)
        except TooDeep as exc:
            raise BadPayload(f"data refused: {exc}", event_id) from None
        except (ValueError, UnicodeDecodeError):
            raise BadPayload("data is not JSON", event_id) from None
    if not isinstance(data, dict):
        raise BadPayload(f"data must be a JSON object with a {model.__name__}", event_id)
    if verifier is not None and signed_if is None:
        _verify(verifier, attrs, data, model, event_id)
    try:
        message = model.model_validate(data, context=limits or MessageLimits())
    except ValidationError as exc:
        raise BadPayload(f"{model.__name__} is invalid: {describe_errors(exc)}", event_id) from None
    if verifier is not None and signed_if is not None and signed_if(message):
        _verify(verifier, attrs, data, model, event_id)
    return event_id, message


def _verify(
    verifier: Verifier, attrs: dict[str, Any], data: Any, model: type[Message], event_id: str
) -> None:
    try:
        verifier.verify(attrs, data)
    except BadSignature as exc:
        raise Unverified(f"{model.__name__} refused: {exc}", event_id) from None
