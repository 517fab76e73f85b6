"""requests.http runs against the real stack, top to bottom as its header says to send it, and
every request answers what its `# expect:` line documents: the status, and the listed fields of
the JSON body ("field~": contains the text; a list: contains such items). A read marked
`within Ns` is sent again until it holds or N seconds passed, as its reader is told to. A
request without an expectation fails the test: the file is documentation. Its ids (req-...)
are made this run's own, so it never meets another test's orders or an earlier run's."""

from __future__ import annotations

import json
import re
import time
import uuid
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
    content: str
    status: int | None  # None: the file documents no answer for it
    body: Any  # what the answer's JSON must match (see `matches`); None: anything
    within: float  # seconds to keep asking while it does not match yet


def requests_of(text: str, variables: dict[str, str]) -> list[Request]:
    for name, value in re.findall(r"^@(\w+) = (.+)$", text, flags=re.M):
        variables.setdefault(name, value)

    def fill(s: str) -> str:
        return re.sub(r"\{\{(\w+)\}\}", lambda m: variables[m.group(1)], s)

    found = []
    for block in text.split("\n### ")[1:]:
        title, *lines = block.split("\n")
        status, expected, within = None, None, 0.0
        while lines and lines[0].startswith("#"):
            if m := re.match(r"# expect(?: within (\d+)s)?: (\d{3})\s*(.*)$", lines.pop(0)):
                within, status = float(m.group(1) or 0), int(m.group(2))
                expected = json.loads(m.group(3)) if m.group(3) else None
        method, url = lines.pop(0).split(" ", 1)
        headers: dict[str, str] = {}
        while lines and lines[0].strip():
            key, value = lines.pop(0).split(": ", 1)
            headers[key] = fill(value)
        content = "\n".join(lines).strip()
        found.append(Request(title, method, fill(url), headers, content, status, expected, within))
    return found


def matches(expected: Any, got: Any) -> bool:
    """An object: each listed field matches ("name~": a text containing the value); a list:
    each listed item matches some item of the answer; anything else: equal."""
    if isinstance(expected, dict):
        return isinstance(got, dict) and all(
            isinstance(got.get(k[:-1]), str) and v in got[k[:-1]]
            if k.endswith("~")
            else k in got and matches(v, got[k])
            for k, v in expected.items()
        )
    if isinstance(expected, list):
        return isinstance(got, list) and all(any(matches(e, g) for g in got) for e in expected)
    return bool(expected == got)


def test_requests_http_answers_what_it_documents(stack: Stack, http: httpx.Client) -> None:
    variables = {
        "orders": stack.apps["orders"].app_url,
        "approvals": stack.apps["approvals"].app_url,
        "notifier": stack.apps["notifier"].app_url,
        "ordersSidecar": stack.apps["orders"].dapr_url,
        "ordersSidecarToken": stack.apps["orders"].dapr_api_token,
    }
    text = (ROOT / "requests.http").read_text().replace("req-", f"r{uuid.uuid4().hex[:8]}-")
    requests = requests_of(text, variables)
    assert len(requests) >= 20
    assert [r.title for r in requests if r.status is None] == []
    for r in requests:
        deadline = time.monotonic() + r.within
        while True:
            resp = http.request(
                r.method,
                r.url,
                headers={"Authorization": "", **r.headers},
                content=r.content.encode() or None,
                timeout=40,
            )
            got = resp.json() if resp.content else None
            ok = resp.status_code == r.status and (r.body is None or matches(r.body, got))
            if ok or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        assert resp.status_code == r.status, (r.title, resp.status_code, resp.text)
        assert r.body is None or matches(r.body, got), f"{r.title}: {r.body} not in {got}"
