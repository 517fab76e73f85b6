"""approvals-ctl order get / approval get against a loopback server that records the request."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from approvals_ctl.__main__ import main

ANSWERS: dict[str, tuple[int, dict[str, Any]]] = {
    "/orders/o-1": (200, {"order_id": "o-1", "status": "received", "reached": False}),
    "/orders/o-2": (200, {"order_id": "o-2", "status": "completed", "reached": True}),
    "/orders/o-3": (404, {"detail": "no order 'o-3' after waiting 2s"}),
    "/approvals/o-1": (200, {"order_id": "o-1", "tier": "vp", "stage": 2, "log": []}),
}


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            status, answer = ANSWERS[self.path.split("?")[0]]
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", asked
    httpd.shutdown()
    httpd.server_close()


def ctl(url: str, *args: str) -> int:
    return main(["--orders-url", url, "--approvals-url", url, *args])


def test_order_get_waits_on_the_server_and_says_when_the_status_was_not_reached(
    server: tuple[str, list[str]], capsys: pytest.CaptureFixture
) -> None:
    url, asked = server
    assert ctl(url, "order", "get", "o-2", "--wait", "30", "--until", "completed") == 0
    assert asked == ["/orders/o-2?wait=30.0&until=completed"]
    assert "status: completed" in capsys.readouterr().out
    assert ctl(url, "order", "get", "o-1", "--wait", "5", "--until", "completed") == 1
    assert "order o-1 is received, not completed yet" in capsys.readouterr().err
    assert ctl(url, "order", "get", "o-3", "--wait", "2") == 3


def test_approval_get_waits_for_the_approval(
    server: tuple[str, list[str]], capsys: pytest.CaptureFixture
) -> None:
    url, asked = server
    assert ctl(url, "--json", "approval", "get", "o-1", "--wait", "10") == 0
    assert asked == ["/approvals/o-1?wait=10.0"]
    assert json.loads(capsys.readouterr().out)["tier"] == "vp"
