"""The README's five-minute tour, pasted into a shell as a user would, against its own stack.

The tour's code blocks run in order in one bash process (one terminal: variables carry over),
against a stack started with the tour's own settings. The only changes to the text are the
addresses: the stack listens on free ports here, and its tokens file is in its run directory.
What the tour promises is then checked through the APIs, and the output must show none of the
things a user would stumble on (a refused connection, a missing command, a server error).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from devstack import mail
from devstack.stack import Stack
from tests.fakes import bearer
from tests.stack import ROOT, WebhookSink

pytestmark = pytest.mark.e2e

# What the tour's first block says: `POLICY_MANAGER_DEADLINE=45s make run`.
TOUR_ENV = {"POLICY_MANAGER_DEADLINE": "45s"}
STUMBLES = [
    "curl: (7)",  # connection refused
    "command not found",
    "jq: error",  # a log line that is not one JSON object
    "Traceback",
    "Internal Server Error",
    '"detail":"Not Found"',  # a route that does not exist
    "error: unrecognized arguments",
    "worth retrying",  # a 5xx in our own words
    "missing or wrong",  # a sidecar or app token refused
    "after waiting",  # a read that waited and found nothing
]


def tour_blocks(readme: str) -> list[str]:
    """The sh blocks of the tour section, without the one that starts the stack."""
    section = readme.split("## A five-minute tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return [b for b in blocks if "make run" not in b]


def readdress(script: str, stack: Stack) -> str:
    """The default addresses of `make run`, as this stack has them."""
    ports = {
        8101: stack.apps["orders"].app_port,
        8102: stack.apps["approvals"].app_port,
        8103: stack.apps["notifier"].app_port,
        3501: stack.apps["orders"].http_port,
        3502: stack.apps["approvals"].http_port,
        3503: stack.apps["notifier"].http_port,
    }
    if inbox := stack.env.get("MAIL_INBOX_URL"):  # a stack started without mail has no inbox
        ports[mail.WEB_PORT] = int(inbox.rsplit(":", 1)[1])
    for default, actual in ports.items():
        script = re.sub(rf"\b(localhost|127\.0\.0\.1):{default}\b", f"127.0.0.1:{actual}", script)
    for kept in ("tokens.env", "logs/"):
        script = script.replace(f".run/{kept}", f"{stack.run_dir}/{kept}")
    return script


@pytest.fixture(scope="module")
def tour_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    sink = WebhookSink()
    sink.thread.start()
    run_dir = tmp_path_factory.mktemp("tour")
    try:
        stack = Stack(
            run_file=ROOT / "dapr.yaml",
            run_dir=run_dir,
            free_ports=True,
            env=dict(TOUR_ENV),
            component_metadata={"notify-webhook": {"url": sink.url}},
        )
        assert mail.with_mail(stack) is not None, "the tour needs its mail server"
        with stack as running:
            yield running
    finally:
        sink.server.shutdown()
        sink.server.server_close()


def run_tour(stack: Stack) -> str:
    script = readdress("\n".join(tour_blocks((ROOT / "README.md").read_text())), stack)
    env = {
        **os.environ,
        "ORDERS_URL": stack.apps["orders"].app_url,
        "APPROVALS_URL": stack.apps["approvals"].app_url,
    }
    env.pop("APPROVALS_TOKEN", None)
    done = subprocess.run(
        ["bash", "-s"],
        input=script,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
        check=False,
    )
    return done.stdout + done.stderr


def test_the_readme_tour_works_as_pasted(tour_stack: Stack) -> None:
    output = run_tour(tour_stack)
    stumbles = [s for s in STUMBLES if s in output]
    assert not stumbles, f"the tour stumbles on {stumbles}:\n{output}"
    with httpx.Client(headers=bearer("operator"), timeout=10) as http:
        orders = tour_stack.apps["orders"].app_url
        approvals = tour_stack.apps["approvals"].app_url

        def order(order_id: str) -> dict:
            resp = http.get(f"{orders}/orders/{order_id}")
            assert resp.status_code == 200, f"{order_id}: {resp.text}\n{output}"
            return resp.json()  # type: ignore[no-any-return]

        def result(order_id: str) -> dict:
            found = order(order_id)["result"]
            assert found, f"{order_id} has no result yet:\n{output}"
            return found  # type: ignore[no-any-return]

        assert result("tour-1")["reason"] == "auto_approved"
        assert result("tour-2")["decided_by"] == "bob"
        assert result("tour-3")["decided_by"] == "val"
        assert (result("tour-6")["decided_by"], result("tour-6")["reason"]) == (
            "mia",
            "from my inbox",
        )
        assert "this link was used already" in output
        assert "Order tour-6: completed" in output, output
        assert order("tour-4")["workflow_status"] == "RUNNING", output  # resumed, undecided
        assert order("tour-5")["status"] == "cancelled", output
        closed = http.get(f"{approvals}/approvals/tour-5").json()
        assert closed["status"] == "cancelled" and closed["decided_by"] == "olga", output
        assert "tour-1 is completed: a finished order cannot be cancelled" in output
        approval = http.get(f"{approvals}/approvals/tour-4").json()
        assert approval["status"] == "pending" and approval["decided_by"] is None
        dead = http.get(f"{approvals}/deadletters", params={"topic": "decisions"}).json()
        assert any(d["event_id"] == "forged-1" and "unsigned" in d["reason"] for d in dead)
        verified = http.get(f"{orders}/audit/verify").json()
        assert verified["intact"] is True, verified


def test_the_tour_addresses_are_the_ones_make_run_uses() -> None:
    """The substitution above is only honest while the tour names these defaults."""
    script = "\n".join(tour_blocks((ROOT / "README.md").read_text()))
    run = (ROOT / "dapr.yaml").read_text()
    for port in re.findall(r"(?:localhost|127\.0\.0\.1):(\d{4})", script):
        assert re.search(rf"(appPort|daprHTTPPort): {port}\b", run) or int(port) == mail.WEB_PORT
