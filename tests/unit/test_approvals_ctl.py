"""approvals-ctl against a tiny loopback server that records what it was sent."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from approvals_ctl.__main__ import TOKEN_WARNING, main


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    """A fake orders app: every GET answers one instance; the Authorization headers are kept."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("authorization", ""))
            body = json.dumps({"instance_id": "order-o-1", "status": "RUNNING"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def run(url: str, *args: str) -> int:
    return main(["--orders-url", url, "--json", *args, "get", "order-o-1"])


def test_token_from_the_environment_is_sent_without_a_warning(
    server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    url, seen = server
    monkeypatch.setenv("APPROVALS_TOKEN", "from-the-env")
    assert run(url) == 0
    assert seen == ["Bearer from-the-env"]
    assert capsys.readouterr().err == ""


def test_token_on_the_command_line_works_but_warns_on_stderr(
    server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    url, seen = server
    monkeypatch.delenv("APPROVALS_TOKEN", raising=False)
    assert run(url, "--token", "on-the-line") == 0
    assert seen == ["Bearer on-the-line"]
    out = capsys.readouterr()
    assert TOKEN_WARNING in out.err and "APPROVALS_TOKEN" in out.err
    assert "on-the-line" not in out.err and "on-the-line" not in out.out
