"""Wrap messages in CloudEvents 1.0 envelopes and unwrap them, with the business id as `id`.

Errors: BadEnvelope (not a CloudEvent at all), BadPayload (a CloudEvent whose data does not
fit the message model) and its kind Unverified (a message that must be signed is not, or not by
a trusted key); all are permanent: a subscriber answers DROP.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import ValidationError

from contracts.messages import Message, MessageLimits, describe_errors
from contracts.signing import BadSignature, Signer, Verifier

M = TypeVar("M", bound=Message)
_FORMAT = JSONFormat()
CONTENT_TYPE = "application/cloudevents+json"


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


def envelope(body: bytes) -> dict[str, Any]:
    """Parse and validate the CloudEvent attributes of `body`; data stays raw."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEnvelope(f"body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BadEnvelope("body is not a JSON object")
    try:
        event = _FORMAT.read(None, body)
    except Exception as exc:  # the library raises several types for one meaning
        raise BadEnvelope(f"not a CloudEvents 1.0 envelope: {exc}") from None
    attrs = dict(event.get_attributes())
    attrs["data"] = event.get_data()
    return attrs


def unwrap(
    body: bytes,
    model: type[M],
    limits: MessageLimits | None = None,
    verifier: Verifier | None = None,
) -> tuple[str, M]:
    """Return (CloudEvent id, parsed message); raise BadEnvelope, BadPayload or Unverified.

    With a verifier, the message must carry a valid signature by one of its keys."""
    attrs = envelope(body)
    event_id = str(attrs["id"])
    data = attrs.get("data")
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError:
            raise BadPayload("data is not JSON", event_id) from None
    if not isinstance(data, dict):
        raise BadPayload(f"data must be a JSON object with a {model.__name__}", event_id)
    if verifier is not None:
        try:
            verifier.verify(attrs, data)
        except BadSignature as exc:
            raise Unverified(f"{model.__name__} refused: {exc}", event_id) from None
    try:
        message = model.model_validate(data, context=limits or MessageLimits())
    except ValidationError as exc:
        raise BadPayload(f"{model.__name__} is invalid: {describe_errors(exc)}", event_id) from None
    return event_id, message
