"""The HTTP client of the management API, exit codes, and how results are shown."""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx

TOKEN_WARNING = (
    "warning: --token shows the token to anyone who can list processes (ps) and may land in "
    "your shell history; set APPROVALS_TOKEN instead"
)

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_BROKEN, EXIT_JOB = range(7)


class CtlError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        self.http = httpx.Client(timeout=args.timeout_s, headers=headers)

    def base(self, app: str | None = None) -> str:
        chosen = app or self.args.app
        return str(self.args.orders_url if chosen == "orders" else self.args.approvals_url)

    def call(self, method: str, path: str, app: str | None = None, **kw: Any) -> Any:
        resp = self.send(method, path, app, **kw)
        return resp.json() if resp.content else None

    def send(self, method: str, path: str, app: str | None = None, **kw: Any) -> httpx.Response:
        url = self.base(app).rstrip("/") + path
        try:
            resp = self.http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise CtlError(f"cannot reach {url}: {exc}", EXIT_FAIL) from None
        if resp.status_code < 300:
            return resp
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        code = (
            EXIT_NOT_FOUND
            if resp.status_code == 404
            else EXIT_REFUSED
            if resp.status_code in (401, 403, 409, 410, 413, 422)
            else EXIT_FAIL
        )
        raise CtlError(f"{resp.status_code}: {detail}", code)


def _loads(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise CtlError(f"{what} must be JSON (got {text!r})", EXIT_USAGE) from None


def _show(args: argparse.Namespace, data: Any, human: str | None = None) -> None:
    if args.json or human is None:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(human)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"

    def cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        return "" if value is None else str(value)

    widths = {c: max(len(c), *(len(cell(r, c)) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(cell(r, c).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
