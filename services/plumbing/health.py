"""Readiness: can this app do its work now? Asked of its sidecar, each call with a deadline.

An app is ready when, within `timeout` seconds per call:

- its sidecar answers (`/v1.0/healthz/outbound`);
- the sidecar has loaded the state store and the pub/sub component the app uses
  (`/v1.0/metadata`);
- the state store answers a read (`/v1.0/state/<store>/<key>` of a key that is never
  written), so a Redis that is down, hung or refusing the password shows here.

Dapr 1.18 offers no call that reaches a pub/sub broker without publishing (the components'
`Ping` is not exposed by the sidecar), and publishing a probe would grow a stream forever. The
pub/sub check is therefore that the component is loaded; its broker is checked through the
state store only where both use one server, as in the local stack and deploy/ (one Redis).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

# Read, never written: a read of a missing key is the cheapest round trip to the store.
PROBE_KEY = "readyz-probe"


class Readiness(Protocol):
    async def problems(self) -> dict[str, str]:
        """What keeps the app from working, by what it concerns; empty when ready."""
        ...


@dataclass(frozen=True)
class SidecarReadiness:
    """Readiness asked of the app's sidecar over its HTTP API."""

    sidecar_url: str
    api_token: str | None
    state_store: str
    pubsub: str
    timeout: float = 2.0
    # Tests: a fake sidecar (httpx.MockTransport).
    transport: httpx.AsyncBaseTransport | None = None

    async def problems(self) -> dict[str, str]:
        headers = {"dapr-api-token": self.api_token} if self.api_token else {}
        async with httpx.AsyncClient(
            base_url=self.sidecar_url,
            timeout=self.timeout,
            headers=headers,
            transport=self.transport,
        ) as client:
            sidecar = await self._ask(client, "/v1.0/healthz/outbound")
            if isinstance(sidecar, str):
                return {"sidecar": sidecar}
            problems: dict[str, str] = {}
            metadata = await self._ask(client, "/v1.0/metadata")
            if isinstance(metadata, str):
                problems["sidecar metadata"] = metadata
            else:
                loaded = {c.get("name") for c in metadata.json().get("components") or []}
                for kind, name in (("state store", self.state_store), ("pub/sub", self.pubsub)):
                    if name not in loaded:
                        problems[f"{kind} {name}"] = "not loaded by the sidecar (see its log)"
            store = f"state store {self.state_store}"
            if store not in problems:
                read = await self._ask(client, f"/v1.0/state/{self.state_store}/{PROBE_KEY}")
                if isinstance(read, str):
                    problems[store] = f"a read failed: {read}"
            return problems

    async def _ask(self, client: httpx.AsyncClient, path: str) -> httpx.Response | str:
        """The answer, or what went wrong in words."""
        try:
            resp = await client.get(path)
        except httpx.TimeoutException:
            return f"no answer within {self.timeout:g}s"
        except httpx.HTTPError as exc:
            return f"unreachable ({exc.__class__.__name__})"
        if resp.status_code >= 300:
            return f"{path} answered {resp.status_code}{_said(resp)}"
        return resp


def _said(resp: httpx.Response) -> str:
    """Dapr's error message, if the answer has one: `: <message>`."""
    try:
        body: Any = resp.json()
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return f": {str(message)[:300]}" if message else ""
