"""devstack's mail server: found in the cache, built only when missing, optional for a stack."""

from pathlib import Path

import pytest

from devstack import mail
from devstack.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ORDER_APPROVALS_CACHE", str(tmp_path))
    return tmp_path


def test_only_a_complete_build_counts_as_cached(empty_cache: Path) -> None:
    where = empty_cache / "mailpit" / "9.9.9"
    where.mkdir(parents=True)
    (where / "mailpit").write_text("")
    assert mail.cached_mailpit("9.9.9") is None  # no marker: a build that did not finish
    (where / mail.MARKER).write_text("{}")
    assert mail.cached_mailpit("9.9.9") == where / "mailpit"


def test_without_go_a_stack_runs_without_email_and_says_why(
    empty_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(empty_cache))  # no `go` on it
    stack = Stack(run_file=ROOT / "dapr.yaml", run_dir=empty_cache / "run", env={})
    assert mail.with_mail(stack) is None
    assert "NOTIFY_CHANNELS" not in stack.env and "notify-email" not in stack.component_metadata
    assert "running without e-mail: Go is not installed" in capsys.readouterr().err
    assert stack.procs == []


def test_the_binding_is_pointed_at_the_running_server() -> None:
    box = mail.Mailbox(smtp_port=2525, web_port=8026)
    assert box.binding_metadata() == {
        "host": "127.0.0.1",
        "port": "2525",
        "emailFrom": "approvals@example.test",
    }
    assert box.url == "http://127.0.0.1:8026"
