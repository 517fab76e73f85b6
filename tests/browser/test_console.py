"""The web console in headless Chromium, against the real stack.

Chromium renders the page, runs its script against the apps' APIs and dumps the resulting
DOM; the assertions read what a person would see. Clicks are not driven here (the API calls
behind the buttons are covered by the service and e2e tiers). Where the page leaves the address
bar is read from Chromium's DevTools HTTP endpoint (`/json/list`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.e2e.flow import Flow
from tests.stack import eventually

pytestmark = pytest.mark.browser

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium: found, or installed with apt-get when we are root."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail("the browser tests need Chromium: `sudo apt-get install -y chromium`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
    return shutil.which("chromium") or pytest.fail(
        "apt-get installed chromium but it is not on PATH"
    )


def render(chromium: str, url: str, screenshot: Path | None = None) -> str:
    """The page's DOM after its script ran (and a screenshot, when asked)."""
    with tempfile.TemporaryDirectory() as profile:
        extra = (
            [f"--screenshot={screenshot}", "--window-size=1280,900"]
            if screenshot
            else ["--dump-dom"]
        )
        done = subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", *extra, url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def location_after_load(chromium: str, url: str, until: str) -> str:
    """The page's URL as Chromium shows it, once it starts with `until` and carries no token."""
    live = [chromium, *(f for f in FLAGS if not f.startswith("--virtual-time-budget"))]
    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [*live, f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            port = eventually(
                lambda: port_file.exists() and port_file.read_text().split("\n")[0],
                timeout=30,
                what="Chromium's DevTools port",
            )

            def page_url() -> str | None:
                try:
                    pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                except httpx.HTTPError:
                    return None
                urls = [p["url"] for p in pages if p["type"] == "page"]
                return next((u for u in urls if u.startswith(until) and "token" not in u), None)

            return eventually(page_url, timeout=30, what=f"{until} without the token")
        finally:
            browser.terminate()
            browser.wait(timeout=30)


def test_console_takes_the_token_out_of_the_url_and_allows_no_inline_code(
    flow: Flow, chromium: str
) -> None:
    policy = flow.http.get(f"{flow.orders}/console").headers["content-security-policy"]
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy and "base-uri 'none'" in policy
    console = f"{flow.orders}/console"
    seen = location_after_load(chromium, f"{console}#token=dev-viewer-vic&view=audit", console)
    assert seen == f"{console}#view=audit"
    assert location_after_load(chromium, f"{console}#token=dev-viewer-vic", console) == console


def test_console_lists_workflows_and_shows_one_with_its_history(
    flow: Flow, chromium: str, tmp_path: Path
) -> None:
    order = flow.place("42.00")
    flow.finished(order.order_id)
    iid = f"order-{order.order_id}"
    page = f"{flow.orders}/console#token=dev-viewer-vic&instance={iid}"
    dom = eventually(
        lambda: (d := render(chromium, page)) and iid in d and "EXECUTION_COMPLETED" in d and d,
        timeout=30,
        what="the console to show the instance",
    )
    assert "Control room · orders" in dom
    assert '<span class="badge COMPLETED">COMPLETED</span>' in dom
    assert "auto_approved" in dom
    render(chromium, page, screenshot=tmp_path / "console.png")
    assert (tmp_path / "console.png").stat().st_size > 10_000


def test_approvals_console_shows_the_inbox_to_an_approver(
    flow: Flow, chromium: str, tmp_path: Path
) -> None:
    order = flow.place("1300")
    yen = flow.place("200000", currency="JPY")
    flow.pending(order.order_id)
    flow.pending(yen.order_id)
    page = f"{flow.approvals}/console#token=dev-manager-bob&view=inbox"
    dom = eventually(
        lambda: (d := render(chromium, page)) and yen.order_id in d and order.order_id in d and d,
        timeout=30,
        what="the orders in the approver's inbox",
    )
    assert "Approvals inbox" in dom and "1300.00 EUR" in dom and ">Approve</button>" in dom
    assert "200000 JPY (1100.00 EUR; 1 JPY = 0.0055 EUR as of 2026-11-20)" in dom
    render(chromium, page, screenshot=tmp_path / "inbox.png")


def test_console_without_a_token_asks_for_one_and_a_bad_one_is_shown(
    flow: Flow, chromium: str
) -> None:
    assert "Enter a bearer token to start." in render(chromium, f"{flow.orders}/console")
    dom = render(chromium, f"{flow.orders}/console#token=not-a-token")
    assert "401: unknown token" in dom
