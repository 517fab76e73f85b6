"""Readiness: can this app do its work now? Asked of its sidecar, each call with a deadline.

An app is ready when, within `timeout` seconds per call:

- its sidecar answers (`/v1.0/healthz/outbound`);
- the sidecar has loaded the state store and the pub/sub component the app uses
  (`/v1.0/metadata`);
- the state store answers a read (`/v1.0/state/<store>/<key>` of a key that is never
  written), so a store that is down, hung or refusing the password shows here;
- the pub/sub's broker takes a message: Dapr 1.18 has no call that reaches a broker without
  publishing (the components' `Ping` is not exposed by the sidecar), so one empty message goes
  to the topic `readyz` of the `readiness` component (components/readiness.yaml): the same
  Redis as the pub/sub, a stream trimmed to about one entry, a topic no one acts on.

The state read and the probe message go out together, so a probe takes at most about two
timeouts (the sidecar first, then both), and says everything that is missing at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

# Read, never written: a read of a missing key is the cheapest round trip to the store.
PROBE_KEY = "readyz-probe"
PROBE_TOPIC = "readyz"


class Readiness(Protocol):
    async def problems(self) -> dict[str, str]:
        """What keeps the app from working, by what it concerns; empty when ready."""
        ...

    async def engine(self) -> dict[str, Any]:
        """What the sidecar says of its workflow engine (see SidecarReadiness.engine)."""
        ...


@dataclass(frozen=True)
class SidecarReadiness:
    """Readiness asked of the app's sidecar over its HTTP API."""

    sidecar_url: str
    api_token: str | None
    state_store: str
    pubsub: str
    # The component the probe message goes to; "" checks no broker.
    probe_pubsub: str = "readiness"
    timeout: float = 2.0
    # Tests: a fake sidecar (httpx.MockTransport).
    transport: httpx.AsyncBaseTransport | None = None

    def _client(self) -> httpx.AsyncClient:
        headers = {"dapr-api-token": self.api_token} if self.api_token else {}
        return httpx.AsyncClient(
            base_url=self.sidecar_url,
            timeout=self.timeout,
            headers=headers,
            transport=self.transport,
        )

    async def problems(self) -> dict[str, str]:
        async with self._client() as client:
            sidecar = await self._ask(client, "GET", "/v1.0/healthz/outbound")
            if isinstance(sidecar, str):
                return {"sidecar": sidecar}
            metadata = await self._ask(client, "GET", "/v1.0/metadata")
            if isinstance(metadata, str):
                return {"sidecar metadata": metadata}
            loaded = {c.get("name") for c in metadata.json().get("components") or []}
            store, pubsub = f"state store {self.state_store}", f"pub/sub {self.pubsub}"
            problems: dict[str, str] = {}
            for what, name in ((store, self.state_store), (pubsub, self.pubsub)):
                if name not in loaded:
                    problems[what] = "not loaded by the sidecar (see its log)"
            if self.probe_pubsub and self.probe_pubsub not in loaded:
                problems[pubsub] = (
                    f"its broker cannot be checked: the sidecar has no component "
                    f"{self.probe_pubsub!r} (components/readiness.yaml)"
                )
            checks = {}
            if store not in problems:
                checks[store] = self._ask(
                    client, "GET", f"/v1.0/state/{self.state_store}/{PROBE_KEY}"
                )
            if pubsub not in problems and self.probe_pubsub:
                checks[pubsub] = self._ask(
                    client, "POST", f"/v1.0/publish/{self.probe_pubsub}/{PROBE_TOPIC}", json={}
                )
            answers = await asyncio.gather(*checks.values())
            for what, answer in zip(checks, answers, strict=True):
                if isinstance(answer, str):
                    verb = "a read" if what == store else "a probe message to its broker"
                    problems[what] = f"{verb} failed: {answer}"
            return problems

    async def engine(self) -> dict[str, Any]:
        """Whether the sidecar answers and what its metadata says of the workflow engine:
        `sidecar` ("ok", or what went wrong), `workflow_workers` (this app's workers with a
        stream open to it: 0 means nothing runs the app's workflows), `actor_runtime` and
        `placement` (workflows are actors), `scheduler` (connected scheduler addresses:
        timers and retries fire through it)."""
        async with self._client() as client:
            answer = await self._ask(client, "GET", "/v1.0/metadata")
        if isinstance(answer, str):
            return {"sidecar": answer, "workflow_workers": None}
        body = answer.json()
        actors = body.get("actorRuntime") or {}
        scheduler = body.get("scheduler") or {}
        return {
            "sidecar": "ok",
            "workflow_workers": int((body.get("workflows") or {}).get("connectedWorkers", 0)),
            "actor_runtime": actors.get("runtimeStatus"),
            "placement": actors.get("placement"),
            "scheduler": list(
                scheduler.get("connected_addresses") or scheduler.get("connectedAddresses") or []
            ),
        }

    async def _ask(
        self, client: httpx.AsyncClient, method: str, path: str, json: Any = None
    ) -> httpx.Response | str:
        """The answer, or what went wrong in words."""
        try:
            resp = await client.request(method, path, json=json)
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
