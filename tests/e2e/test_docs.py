"""requests.http runs against the real stack, top to bottom as its header says to send it, and
every request answers what its `# expect:` line documents: the status, and the listed fields of
the JSON body. A request without an expectation fails the test: the file is documentation."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import Stack

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Request:
    title: str
    method: str
    url: str
    headers: dict[str, str]
    body: str
    status: int | None  # None: the file documents no answer for it
    fields: dict[str, Any]


def requests_of(text: str, variables: dict[str, str]) -> list[Request]:
    for name, value in re.findall(r"^@(\w+) = (.+)$", text, flags=re.M):
        variables.setdefault(name, value)

    def fill(s: str) -> str:
        return re.sub(r"\{\{(\w+)\}\}", lambda m: variables[m.group(1)], s)

    found = []
    for block in text.split("\n### ")[1:]:
        title, *lines = block.split("\n")
        status, fields = None, {}
        while lines and lines[0].startswith("#"):
            if m := re.match(r"# expect: (\d{3})\s*(.*)$", lines.pop(0)):
                status, fields = int(m.group(1)), json.loads(m.group(2) or "{}")
        method, url = lines.pop(0).split(" ", 1)
        headers: dict[str, str] = {}
        while lines and lines[0].strip():
            key, value = lines.pop(0).split(": ", 1)
            headers[key] = fill(value)
        body = "\n".join(lines).strip()
        found.append(Request(title, method, fill(url), headers, body, status, fields))
    return found


def test_requests_http_answers_what_it_documents(stack: Stack, http: httpx.Client) -> None:
    variables = {
        "orders": stack.apps["orders"].app_url,
        "approvals": stack.apps["approvals"].app_url,
        "notifier": stack.apps["notifier"].app_url,
        "ordersSidecar": stack.apps["orders"].dapr_url,
        "ordersSidecarToken": stack.apps["orders"].dapr_api_token,
    }
    requests = requests_of((ROOT / "requests.http").read_text(), variables)
    assert len(requests) >= 20
    assert [r.title for r in requests if r.status is None] == []
    for r in requests:
        resp = http.request(
            r.method,
            r.url,
            headers={"Authorization": "", **r.headers},
            content=r.body.encode() or None,
            timeout=40,
        )
        assert resp.status_code == r.status, (r.title, resp.status_code, resp.text)
        if r.fields:
            got = resp.json()
            assert {k: got.get(k) for k in r.fields} == r.fields, (r.title, got)
