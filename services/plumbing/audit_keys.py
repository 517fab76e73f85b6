"""The audit log's keys: HMAC-SHA256 keys by key id, read once from the secret store.

The secret (default "audit-key") maps key ids to keys and names the one in use:
{"current": "k2", "k1": "...", "k2": "..."}. Records and checkpoints carry the id of the key
that signed them, so a rotation adds a key and moves `current`; old keys stay to verify what
they signed. Key ids starting with "dev-" are development keys (they are in git) and are
refused outside DEV_MODE. Keys are never logged.

Errors: AuditConfigError (the secret is missing or malformed: startup fails with the reason).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
MIN_KEY_CHARS = 32
DEV_KEY_PREFIX = "dev-"


class AuditConfigError(ValueError):
    """The audit key secret is missing or malformed."""


@dataclass(frozen=True)
class Keyring:
    """The audit keys by key id, and the one that signs new records and checkpoints."""

    current: str
    keys: Mapping[str, bytes] = field(repr=False)

    @classmethod
    def parse(cls, raw: Mapping[str, str], development: bool = False) -> Keyring:
        """From {"current": kid, kid: key, ...}; raise AuditConfigError saying what is wrong."""
        keys: dict[str, bytes] = {}
        for kid, value in raw.items():
            if kid == "current":
                continue
            if not KEY_ID.match(kid):
                raise AuditConfigError(f"audit key id {kid!r}: use 1-32 of [A-Za-z0-9_.-]")
            if len(value) < MIN_KEY_CHARS:
                raise AuditConfigError(
                    f"audit key {kid!r} is shorter than {MIN_KEY_CHARS} characters"
                )
            if kid.startswith(DEV_KEY_PREFIX) and not development:
                raise AuditConfigError(
                    f"audit key {kid!r} is a development key (it is in git); "
                    "outside DEV_MODE give the audit key secret a key of your own"
                )
            keys[kid] = value.encode()
        current = raw.get("current", "")
        if current not in keys:
            raise AuditConfigError(
                f"the audit key secret's 'current' ({current!r}) must name one of its keys "
                f"({', '.join(sorted(keys)) or 'none'})"
            )
        return cls(current, keys)

    def sign(self, kind: str, body: Mapping[str, Any], kid: str | None = None) -> str:
        key = self.keys[kid or self.current]
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hmac.new(key, f"{kind}\n{text}".encode(), hashlib.sha256).hexdigest()

    def check(self, kind: str, body: Mapping[str, Any], kid: str, mac: str) -> bool | None:
        """Whether `mac` is right; None when the key `kid` is unknown here."""
        if kid not in self.keys:
            return None
        return hmac.compare_digest(self.sign(kind, body, kid), mac)
