"""Service tests: the real FastAPI apps, real CloudEvent bodies, fakes at the gateway seam."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from contracts.envelope import CONTENT_TYPE, wrap
from contracts.messages import Message
from contracts.signing import Signer
from plumbing.gateway import Gateway
from plumbing.settings import ServiceSettings
from tests.fakes import LOCAL, bearer, dev_signer, development, fake_gateway, signing_app


@pytest.fixture
def gateway() -> Gateway:
    return fake_gateway()


AppFactory = Callable[..., TestClient]


@pytest.fixture
def client(gateway: Gateway) -> Iterator[AppFactory]:
    clients: list[TestClient] = []

    def make(
        create_app: Callable[..., Any], settings: ServiceSettings, who: str = "admin"
    ) -> TestClient:
        """A client of the app; it sends the development token of `who` unless told otherwise.

        The fake secret store serves the dev- tokens, so the app runs as a development stack.
        """
        app = create_app(development(settings), gateway=gateway)
        c = TestClient(app, base_url=LOCAL, raise_server_exceptions=False, headers=bearer(who))
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def deliver(
    client: TestClient,
    topic: str,
    message: Message | bytes,
    headers: dict[str, str] | None = None,
    signed: bool | Signer = True,
) -> dict[str, Any]:
    """POST what the sidecar would: a CloudEvent JSON body to the subscription route.

    What a service signs is signed with that service's development key, unless `signed` is
    False or another Signer."""
    signer = signed if isinstance(signed, Signer) else None
    if signed is True and not isinstance(message, bytes) and (app := signing_app(message)):
        signer = dev_signer(app)
    body = message if isinstance(message, bytes) else wrap(message, "test", signer)
    resp = client.post(
        f"/events/{topic}", content=body, headers={"content-type": CONTENT_TYPE, **(headers or {})}
    )
    assert resp.status_code in (200, 401), resp.text
    return resp.json()  # type: ignore[no-any-return]
