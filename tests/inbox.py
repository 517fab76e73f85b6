"""The local mail server's inbox as tests read it: Mailpit's JSON API (/api/v1)."""

from __future__ import annotations

from typing import Any

import httpx


class Inbox:
    """What reached the mail server, read through its API (never through the sender)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def search(self, query: str) -> list[dict[str, Any]]:
        """Summaries of the messages matching a Mailpit search (`to:x subject:"y"`), newest
        first."""
        resp = httpx.get(f"{self.url}/api/v1/search", params={"query": query, "limit": 200})
        resp.raise_for_status()
        return resp.json()["messages"]  # type: ignore[no-any-return]

    def message(self, message_id: str) -> dict[str, Any]:
        """One whole message: From, To, Subject, Text, HTML, ..."""
        resp = httpx.get(f"{self.url}/api/v1/message/{message_id}")
        resp.raise_for_status()
        return resp.json()  # type: ignore[no-any-return]

    def to(self, address: str, about: str) -> list[dict[str, Any]]:
        """The whole messages to `address` whose subject names `about`, oldest first."""
        found = self.search(f'to:"{address}" subject:"{about}"')
        return [self.message(m["ID"]) for m in reversed(found)]
