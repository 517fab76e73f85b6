"""The README's "Try a failure", pasted into a shell as a user would, against a supervised stack
of its own (the shared e2e stack does not restart anything: tests that kill a process there
keep control over the restart).

As in the tour, only the addresses change, and `uv run devstack` is this interpreter's devstack,
run from a folder whose `.run` is the stack's run dir, as `make run` would have it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.test_readme_tour import STUMBLES, readdress
from tests.fakes import bearer
from tests.stack import ROOT, eventually, unique

pytestmark = pytest.mark.e2e


def failure_block(readme: str) -> str:
    section = readme.split("## Try a failure", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    return block


@pytest.fixture(scope="module")
def supervised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("failure") / ".run"
    with Stack(run_file=ROOT / "dapr.yaml", run_dir=run_dir, free_ports=True) as running:
        yield running.supervise()


def test_try_a_failure_works_as_pasted(supervised: Stack) -> None:
    script = readdress(failure_block((ROOT / "README.md").read_text()), supervised)
    script = script.replace("uv run devstack", f"{sys.executable} -m devstack")
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        cwd=supervised.run_dir.parent,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    stumbles = [s for s in STUMBLES if s in output] + (["error:"] if "error:" in output else [])
    assert not stumbles, f"it stumbles on {stumbles}:\n{output}"
    assert re.search(r"orders is back: pid \d+, ready [\d.]+s after the signal", output), output
    assert "orders-daprd is back" in output, output
    said = '"pub/sub pubsub":"a probe message to its broker failed: no answer within 2s"'
    assert said in output, output
    assert re.search(r"notifier restarted as pid \d+; ready [\d.]+s later", output), output
    table = output.rsplit("NAME ", 1)[1].splitlines()
    restarts = {line.split()[0]: int(line.split()[3]) for line in table[1:] if line.strip()}
    restarted = {name: n for name, n in restarts.items() if n}
    assert restarted == {"orders-daprd": 1, "orders": 1, "notifier": 1}, output
    assert {"redis", "placement", "scheduler", "approvals", "notifier-daprd"} <= set(restarts)
    order = {"order_id": unique("o"), "customer_id": "c-1", "amount": "30", "currency": "EUR"}
    orders = supervised.apps["orders"].app_url
    with httpx.Client(headers=bearer("operator"), timeout=30) as http:
        assert http.post(f"{orders}/orders", json=order).status_code == 202
        eventually(
            lambda: (
                http.get(f"{orders}/orders/{order['order_id']}").json().get("status") == "completed"
            ),
            what="an order placed after the failures to complete",
        )
