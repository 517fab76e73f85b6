"""approvals-ctl against a tiny loopback server that records what it was sent."""

import argparse
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from approvals_ctl.__main__ import main
from approvals_ctl.client import TOKEN_WARNING
from approvals_ctl.workflow_commands import TERMINATE_WARNING


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

        def do_POST(self) -> None:
            seen.append(f"POST {self.path}")
            self.send_response(500)
            self.end_headers()

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


def test_global_options_work_after_the_command_too(
    server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    url, seen = server
    monkeypatch.delenv("APPROVALS_TOKEN", raising=False)
    assert main(["get", "order-o-1", "--json", "--token", "late", "--orders-url", url]) == 0
    assert seen == ["Bearer late"]
    out = capsys.readouterr()
    assert json.loads(out.out)["status"] == "RUNNING" and TOKEN_WARNING in out.err
    assert main(["get", "order-o-1", "--orders-url", url]) == 0
    assert capsys.readouterr().out.split() == ["instance_id:", "order-o-1", "status:", "RUNNING"]


@pytest.mark.parametrize(
    "args",
    [
        ["terminate", "order-o-1", "--reason", "stuck"],
        ["terminate", "--all-older-than", "72h"],
        ["terminate", "--stuck"],
    ],
)
def test_terminate_without_a_terminal_asks_for_yes_and_sends_nothing(
    server: tuple[str, list[str]],
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
) -> None:
    url, seen = server
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert main(["--orders-url", url, *args]) == 2
    err = capsys.readouterr().err
    assert TERMINATE_WARNING in err and "pass --yes" in err
    assert seen == []


@pytest.mark.parametrize(
    "args",
    [["terminate", "order-o-1", "--reason", "x", "--dry-run"], ["purge", "order-o-1", "--dry-run"]],
)
def test_a_dry_run_of_one_instance_is_a_usage_error_not_the_real_thing(
    server: tuple[str, list[str]], capsys: pytest.CaptureFixture, args: list[str]
) -> None:
    url, seen = server
    assert main(["--orders-url", url, *args]) == 2
    assert "--dry-run is for bulk jobs" in capsys.readouterr().err and seen == []


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "code", "sent"), [("n\n", 4, []), ("", 4, []), ("y\n", 1, 1)])
def test_terminate_at_a_terminal_says_what_it_is_for_and_asks_first(
    server: tuple[str, list[str]],
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    code: int,
    sent: Any,
) -> None:
    url, seen = server
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    assert main(["--orders-url", url, "terminate", "order-o-1", "--reason", "stuck"]) == code
    out = capsys.readouterr()
    assert TERMINATE_WARNING in out.err and "Terminate order-o-1? [y/N]" in out.out
    # "y" goes on to the server (which answers 500 here: exit 1)
    assert seen == ([] if not sent else ["POST /workflows/order-o-1/terminate"])


def leaf_parsers(p: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list:
    """Every command's own parser, with the words that reach it."""
    found = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += leaf_parsers(sub, (*path, name))
    return found or [(path, p)]


def test_every_command_takes_the_global_options_after_it() -> None:
    from approvals_ctl.__main__ import parser

    leaves = leaf_parsers(parser())
    assert len(leaves) >= 18
    for path, leaf in leaves:
        options = {o for a in leaf._actions for o in a.option_strings}
        missing = {"--json", "--token", "--app", "--orders-url", "--approvals-url"} - options
        assert not missing, f"{' '.join(path)} lacks {sorted(missing)} after the command"
