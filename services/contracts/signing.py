"""Signatures on messages whose authority matters: decisions and approval outcomes.

The approvals service checks who may decide, and the orders service what each order needs; each
signs what it publishes with its own Ed25519 key so that a consumer can tell its messages from
anything else on the topic, whoever published it.
The signature covers the CloudEvent type, id and data (canonical JSON) and travels as two
CloudEvent extension attributes: `signature` (base64url) and `signingkey` (the key's id).

Keys live in Dapr secret stores: a signer's private key in a store only that app may read, the
public keys (several at once, so a key can be rotated) where every consumer reads them. Keys
are raw 32-byte Ed25519 keys in base64.

Errors: UnusableKey (a key cannot be used; startup fails with the reason) and BadSignature (the
message is unsigned, signed with an unknown key, or does not verify; a consumer drops it).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE = "signature"
KEY_ID = "signingkey"
_KEY_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class UnusableKey(ValueError):
    """A signing or verification key cannot be used."""


class BadSignature(ValueError):
    """The message is unsigned, signed with a key we do not trust, or altered."""


def canonical(event_type: str, event_id: str, data: Any) -> bytes:
    """What is signed: type, id and the data as canonical JSON (sorted keys, no spaces)."""
    body = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{event_type}\n{event_id}\n{body}".encode()


def _raw(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise UnusableKey(f"{what} is not base64") from None
    if len(raw) != 32:
        raise UnusableKey(f"{what} must be a raw 32-byte Ed25519 key, got {len(raw)} bytes")
    return raw


def _check_key_id(key_id: str) -> str:
    if not _KEY_ID_RE.fullmatch(key_id):
        raise UnusableKey(f"key id {key_id!r} must be 1-64 characters of A-Z, a-z, 0-9, _ . -")
    return key_id


@dataclass(frozen=True)
class Signer:
    key_id: str
    key: Ed25519PrivateKey

    @classmethod
    def from_secret(cls, secret: Mapping[str, str]) -> Signer:
        """From {"key_id": ..., "private_key": base64}."""
        if "key_id" not in secret or "private_key" not in secret:
            raise UnusableKey("the signing secret needs key_id and private_key")
        raw = _raw(secret["private_key"], "private_key")
        return cls(_check_key_id(secret["key_id"]), Ed25519PrivateKey.from_private_bytes(raw))

    def sign(self, event_type: str, event_id: str, data: Any) -> dict[str, str]:
        """The extension attributes to add to the CloudEvent."""
        sig = self.key.sign(canonical(event_type, event_id, data))
        return {SIGNATURE: base64.urlsafe_b64encode(sig).decode(), KEY_ID: self.key_id}


@dataclass(frozen=True)
class Verifier:
    keys: Mapping[str, Ed25519PublicKey]

    @classmethod
    def from_secret(cls, secret: Mapping[str, str]) -> Verifier:
        """From {key_id: base64 public key, ...}; every listed key is trusted."""
        keys = {
            _check_key_id(kid): Ed25519PublicKey.from_public_bytes(_raw(text, f"key {kid}"))
            for kid, text in secret.items()
        }
        if not keys:
            raise UnusableKey("no verification keys")
        return cls(keys)

    def __or__(self, other: Verifier) -> Verifier:
        """Trust the keys of both (a topic that two signers may publish to)."""
        return Verifier({**self.keys, **other.keys})

    def verify(self, attrs: Mapping[str, Any], data: Any) -> str:
        """Return the key id that signed the event; raise BadSignature otherwise."""
        sig, kid = attrs.get(SIGNATURE), attrs.get(KEY_ID)
        if not isinstance(sig, str) or not isinstance(kid, str):
            raise BadSignature("unsigned: no signature and signingkey attributes")
        key = self.keys.get(kid)
        if key is None:
            raise BadSignature(f"signed with key {kid[:64]!r}, which is not trusted")
        try:
            raw = base64.urlsafe_b64decode(sig.encode())
            key.verify(raw, canonical(str(attrs.get("type")), str(attrs.get("id")), data))
        except (InvalidSignature, binascii.Error, ValueError):
            raise BadSignature(f"the signature (key {kid}) does not match the content") from None
        return kid


def new_key_pair(key_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """A fresh (signing secret, verification secret) pair, for rotation and development."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    signing = {"key_id": _check_key_id(key_id), "private_key": base64.b64encode(private).decode()}
    return signing, {key_id: base64.b64encode(public).decode()}
