"""requests.http runs against the real stack: every request authenticates, hits a route that
exists, and gets no 5xx. (Business 4xx, such as a decision posted before its approval exists,
are fine: the file is for trying things by hand.)"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from devstack.stack import Stack

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def requests_of(text: str, variables: dict[str, str]) -> list[tuple[str, str, str, dict, str]]:
    for name, value in re.findall(r"^@(\w+) = (.+)$", text, flags=re.M):
        variables.setdefault(name, value)
    found = []
    for block in text.split("\n### ")[1:]:
        title, request, *rest = block.split("\n")
        method, url = request.split(" ", 1)
        headers, body_lines, in_body = {}, [], False
        for line in rest:
            if not in_body and not line.strip():
                in_body = bool(headers) or in_body
                continue
            if not in_body and ": " in line and not line.startswith("{"):
                key, value = line.split(": ", 1)
                headers[key] = value
            else:
                in_body = True
                body_lines.append(line)

        def fill(s: str) -> str:
            return re.sub(r"\{\{(\w+)\}\}", lambda m: variables[m.group(1)], s)

        found.append(
            (
                title,
                method,
                fill(url),
                {k: fill(v) for k, v in headers.items()},
                "\n".join(body_lines).strip(),
            )
        )
    return found


def test_requests_http_works_against_the_stack(stack: Stack, http: httpx.Client) -> None:
    variables = {
        "orders": stack.apps["orders"].app_url,
        "approvals": stack.apps["approvals"].app_url,
        "notifier": stack.apps["notifier"].app_url,
        "ordersSidecar": stack.apps["orders"].dapr_url,
        "ordersSidecarToken": stack.apps["orders"].dapr_api_token,
    }
    requests = requests_of((ROOT / "requests.http").read_text(), variables)
    assert len(requests) >= 10
    for title, method, url, headers, body in requests:
        resp = http.request(
            method, url, headers={"Authorization": "", **headers}, content=body.encode() or None
        )
        assert resp.status_code not in (401, 403) and resp.status_code < 500, (title, resp.text)
        if resp.status_code == 404:
            assert resp.json()["detail"] != "Not Found", (title, "no such route")
