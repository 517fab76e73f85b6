"""The secrets a stack makes for itself, new on every start: the Redis password, a signing
key pair for every app that signs what it publishes, and the sidecar tokens file.

The repository's secret files (secrets/*.json) hold development keys for the Dapr CLI. devstack
renders a private copy of each into <run dir>/secrets/ (mode 600) with this stack's keys in
place of the committed ones: "<app>-verify-keys" in a shared store, "signing-key" in a store
named "<app>-keys". So no key that anyone can read in the repository signs anything here.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.signing import Signer, new_key_pair

if TYPE_CHECKING:
    from devstack.runfile import App

VERIFY_SUFFIX = "-verify-keys"
KEY_STORE_SUFFIX = "-keys"
SIGNING_SECRET = "signing-key"


def write_private(path: Path, text: str) -> Path:
    """Write `text` to a file only its owner can read (created so, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)
    return path


@dataclass
class StackSecrets:
    redis_password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    _pairs: dict[str, tuple[dict[str, str], dict[str, str]]] = field(
        default_factory=dict, repr=False
    )

    def pair(self, app: str) -> tuple[dict[str, str], dict[str, str]]:
        """(signing secret, public keys) of `app`, made the first time they are asked for."""
        if app not in self._pairs:
            self._pairs[app] = new_key_pair(f"{app}-{secrets.token_hex(4)}")
        return self._pairs[app]

    def signer(self, app: str) -> Signer:
        """What `app` signs with in this stack (for tests that play that app)."""
        return Signer.from_secret(self.pair(app)[0])

    def render(self, store: str, source: Path, out_dir: Path) -> Path:
        """A private copy of a local-file secret store's file, with this stack's keys."""
        data: dict[str, Any] = json.loads(source.read_text())
        for name in list(data):
            if name.endswith(VERIFY_SUFFIX):
                data[name] = self.pair(name.removesuffix(VERIFY_SUFFIX))[1]
        if store.endswith(KEY_STORE_SUFFIX) and SIGNING_SECRET in data:
            data[SIGNING_SECRET] = self.pair(store.removesuffix(KEY_STORE_SUFFIX))[0]
        return write_private(out_dir / f"{store}.json", json.dumps(data, indent=2))


def write_tokens(run_dir: Path, apps: Iterable[App]) -> None:
    """<run dir>/tokens.env: `source` it to call a sidecar by hand (see the README tour)."""
    lines = [
        "# Made by devstack for this stack only; a new stack makes new ones. Each token is",
        "# its app's identity: whoever holds it can do anything that app can.",
    ]
    for app in apps:
        var = app.app_id.upper().replace("-", "_")
        lines.append(f"export {var}_DAPR_API_TOKEN={app.dapr_api_token}")
    write_private(run_dir / "tokens.env", "\n".join(lines) + "\n")
