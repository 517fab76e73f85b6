"""The web console in headless Chromium, against the real stack.

Chromium renders the page, runs its script against the apps' APIs and dumps the resulting
DOM; the assertions read what a person would see. Where the page leaves the address bar is read
from Chromium's DevTools HTTP endpoint (`/json/list`). The later tests click and answer the
page's dialogs as a person would, over the DevTools protocol (tests/browser/cdp.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.browser import cdp
from tests.e2e.flow import Flow
from tests.stack import eventually, unique

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
    """The page's DOM after its script ran (and a screenshot, when asked), without the page's
    line-break hints (<wbr>), so that ids and names read as a person sees them."""
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
    return done.stdout.replace("<wbr>", "")


def location_after_load(chromium: str, url: str, until: str) -> str:
    """The page's URL as Chromium shows it, once it starts with `until` and carries no token."""
    live = [chromium, *(f for f in FLAGS if not f.startswith("--virtual-time-budget"))]
    # Chromium's helper processes may still be writing the profile as it shuts down.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen(
            [*live, f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
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
            os.killpg(browser.pid, signal.SIGTERM)  # Chromium and its helpers
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


# What follows clicks, as a person would, and answers the page's dialogs (tests/browser/cdp.py).
LIVE = [f for f in FLAGS if not f.startswith("--virtual-time-budget")]
DAY = 86_400


def frozen_pending(flow: Flow, amount: str, tier: str = "manager", customer: str = "cust-1"):
    """An order whose approval waits, suspended, so no deadline moves it on while we look."""
    order = flow.place(amount, customer=customer)
    flow.pending(order.order_id, tier)
    resp = flow.http.post(
        f"{flow.approvals}/workflows/approval-{order.order_id}/suspend",
        json={"reason": "held still for a browser test"},
    )
    assert resp.status_code == 200, resp.text
    return order


def inbox_rows(b: cdp.Browser, *order_ids: str) -> dict[str, dict]:
    """What the inbox shows for these orders: the cells' text and the buttons, by order id."""
    script = """[...document.querySelectorAll('#inbox-rows tr')].map((tr) => ({
        order: tr.dataset.approval, cells: [...tr.cells].map((td) => td.innerText.trim()),
        buttons: [...tr.querySelectorAll('button')].map((x) => x.innerText)}))"""
    wanted = set(order_ids)

    def seen() -> dict[str, dict] | None:
        rows = {r["order"]: r for r in b.evaluate(script) if r["order"] in wanted}
        return rows if set(rows) == wanted else None

    return eventually(seen, timeout=30, what=f"{sorted(wanted)} in the inbox")


def test_inbox_offers_bob_only_what_he_may_decide_and_marks_overdue_in_utc(
    flow: Flow, chromium: str, tmp_path: Path
) -> None:
    mine = frozen_pending(flow, "1300")
    vp = frozen_pending(flow, "9000", tier="vp")
    own = frozen_pending(flow, "1200", customer="bob")
    ids = (mine.order_id, vp.order_id, own.order_id)
    page = f"{flow.approvals}/console#token=dev-manager-bob&view=inbox"
    with cdp.browser(chromium, LIVE) as b:
        b.clock_ahead(-DAY)  # a day early: nothing is due yet
        b.open(page)
        rows = inbox_rows(b, *ids)
        assert rows[mine.order_id]["buttons"] == ["Approve", "Reject"]
        assert rows[vp.order_id]["buttons"] == []
        assert "a manager may not decide a VP stage" in rows[vp.order_id]["cells"][4]
        assert rows[own.order_id]["buttons"] == []
        assert "approvers may not decide their own order" in rows[own.order_id]["cells"][4]
        for row in rows.values():
            assert row["cells"][3].endswith(" UTC"), row  # the due time says its zone
            assert "overdue" not in row["cells"][3]
        assert "for you to decide" in b.text("#inbox-total")
    with cdp.browser(chromium, LIVE) as b:
        b.clock_ahead(6 * DAY)  # past every deadline (the longest is 5 days)
        b.open(page)
        rows = inbox_rows(b, *ids)
        assert all(r["cells"][3].endswith("UTC overdue") for r in rows.values()), rows
        b.screenshot(tmp_path / "inbox.png")


def test_cancel_on_the_reason_prompt_sends_no_decision(flow: Flow, chromium: str) -> None:
    order = frozen_pending(flow, "1400")
    page = f"{flow.approvals}/console#token=dev-manager-bob&view=inbox"
    button = f'#inbox-rows tr[data-approval="{order.order_id}"] button'
    with cdp.browser(chromium, LIVE) as b:
        b.open(page)
        inbox_rows(b, order.order_id)
        b.plan((False, None))  # Reject, then Cancel on the reason prompt
        b.click(f'{button}[data-ok=""]')
        assert b.text("#message") == f"order {order.order_id}: reject cancelled, nothing sent"
        b.plan((False, None))  # the same for Approve
        b.click(f'{button}[data-ok="1"]')
        assert b.text("#message") == f"order {order.order_id}: approve cancelled, nothing sent"
        b.plan((True, "looks fine"))
        b.click(f'{button}[data-ok="1"]')
        b.wait_for(
            "document.getElementById('message').innerText.includes('approve submitted as d-')",
            what="the approval to be submitted",
        )
        assert [(d.type, d.accepted) for d in b.dialogs] == [
            ("prompt", False),
            ("prompt", False),
            ("prompt", True),
        ]
    # The server saw one decision: the approval, with its reason; no rejection, no empty one.
    decisions = flow.http.get(
        f"{flow.approvals}/audit", params={"target": order.order_id, "action": "post_decision"}
    ).json()
    assert [(d["outcome"].split(" as ")[0], d["reason"]) for d in decisions] == [
        ("ok: approve 1400.00 EUR", "looks fine")
    ]


def test_instance_offers_what_its_status_allows_and_terminate_asks_first(
    flow: Flow, chromium: str
) -> None:
    order = frozen_pending(flow, "1500")  # its approval is held, so the order keeps RUNNING
    iid = f"order-{order.order_id}"
    done = flow.place("42.00")
    flow.finished(done.order_id)
    buttons = "[...document.querySelectorAll('#detail .actions button')].map((x) => x.innerText)"
    with cdp.browser(chromium, LIVE) as b:
        b.open(f"{flow.orders}/console#token=dev-operator-olga&instance=order-{done.order_id}")
        b.wait_for("!!document.querySelector('#detail h3')", what="the completed instance")
        assert b.evaluate(buttons) == ["Purge"]
        b.open(f"{flow.orders}/console#token=dev-operator-olga&instance={iid}")
        b.wait_for(f"document.querySelector('#detail h3')?.innerText.includes('{iid}')", "it")
        assert b.evaluate(buttons) == ["Cancel", "Suspend", "Terminate"]
        assert "Terminate is for stuck workflows" in b.text("#detail")
        assert "Cancel is how to stop an order" in b.text("#detail")
        b.plan((False, None))  # "Terminate? It is for stuck workflows" -> Cancel
        b.click('#detail [data-act="terminate"]')
        (asked,) = b.dialogs
        assert asked.type == "confirm" and "for stuck workflows" in asked.message
        assert "Cancel is how to stop an order" in asked.message
        assert f"Terminate {iid}?" in asked.message
        assert status(flow, iid) == "RUNNING"
        b.plan((True, None), (True, "  "), (True, "stuck in a test"))  # yes; no reason; a reason
        b.click('#detail [data-act="terminate"]')
        b.wait_for(
            "document.querySelector('#detail .badge')?.innerText === 'TERMINATED'",
            what="the instance to show TERMINATED",
        )
        assert [d.type for d in b.dialogs[1:]] == ["confirm", "prompt", "prompt"]
        assert b.dialogs[3].message.startswith("A reason is required.")
        assert b.evaluate(buttons) == ["Purge"]
    output = flow.http.get(f"{flow.orders}/workflows/{iid}", params={"payloads": True}).json()
    assert output["output"] == {"terminated": True, "by": "olga", "reason": "stuck in a test"}


def status(flow: Flow, iid: str) -> str:
    return str(flow.http.get(f"{flow.orders}/workflows/{iid}").json()["status"])


def test_long_values_wrap_and_the_instance_panel_shows_only_with_an_instance(
    flow: Flow, chromium: str, tmp_path: Path
) -> None:
    long_id = unique("o-long-" + "x" * 35)  # 55 characters, the longest order id
    order = flow.place("42.00", customer="c" * 128, order_id=long_id)
    flow.finished(order.order_id)
    wide = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    panel = "getComputedStyle(document.getElementById('detail')).display"
    with cdp.browser(chromium, LIVE, width=900) as b:
        b.open(f"{flow.orders}/console#token=dev-viewer-vic&instance=order-{long_id}")
        b.wait_for(f"document.getElementById('detail').innerText.includes('{'c' * 128}')", "it")
        b.screenshot(tmp_path / "long.png")
        assert b.evaluate(wide) <= 0, "the page scrolls sideways"
        b.click('nav button[data-view="audit"]')
        b.wait_for("document.querySelectorAll('#audit-rows tr').length", what="the audit log")
        assert b.evaluate(panel) == "none"
        assert b.evaluate(wide) <= 0
        audit, main = "document.getElementById('audit')", "document.querySelector('main')"
        assert b.evaluate(f"{audit}.offsetWidth / {main}.clientWidth") > 0.9
    with cdp.browser(chromium, LIVE, width=900) as b:
        b.open(f"{flow.orders}/console#token=dev-viewer-vic&view=workflows")
        b.wait_for("document.querySelectorAll('#rows tr').length", what="the workflows")
        assert b.evaluate(panel) == "none"  # no empty "select an instance" panel
        assert "Select an instance" in b.text("#workflows")


def test_cancel_asks_for_a_reason_and_the_order_ends_cancelled(flow: Flow, chromium: str) -> None:
    order = frozen_pending(flow, "1600")
    iid = f"order-{order.order_id}"
    buttons = "[...document.querySelectorAll('#detail .actions button')].map((x) => x.innerText)"
    with cdp.browser(chromium, LIVE) as b:
        b.open(f"{flow.orders}/console#token=dev-operator-olga&instance={iid}")
        b.wait_for(f"document.querySelector('#detail h3')?.innerText.includes('{iid}')", "it")
        assert b.evaluate(buttons) == ["Cancel", "Suspend", "Terminate"]
        b.plan((False, None))  # Cancel on the reason prompt: nothing is sent
        b.click('#detail [data-act="cancel"]')
        assert b.text("#message") == f"{iid}: cancel called off, nothing sent"
        assert status(flow, iid) == "RUNNING"
        b.plan((True, ""), (True, "customer withdrew"))  # no reason; then one
        b.click('#detail [data-act="cancel"]')
        b.wait_for(
            "document.querySelector('#detail .badge')?.innerText === 'COMPLETED'",
            what="the cancelled order's workflow to show COMPLETED",
        )
        assert b.text("#message") == f"order {order.order_id}: cancelled"
        assert [d.type for d in b.dialogs] == ["prompt", "prompt", "prompt"]
        assert b.dialogs[2].message.startswith("A reason is required.")
        assert b.evaluate(buttons) == ["Purge"]
    shown = flow.http.get(f"{flow.orders}/orders/{order.order_id}").json()
    assert shown["status"] == "cancelled" and shown["result"]["decided_by"] == "olga"
    (asked,) = flow.http.get(
        f"{flow.orders}/audit", params={"target": order.order_id, "action": "cancel_order"}
    ).json()
    assert (asked["actor"], asked["reason"], asked["outcome"]) == (
        "olga",
        "customer withdrew",
        "ok: requested",
    )


def test_the_diagnosis_panel_and_the_stuck_filter(flow: Flow, chromium: str) -> None:
    order = frozen_pending(flow, "1650")  # its order waits for the approval, as designed
    iid = f"order-{order.order_id}"
    with cdp.browser(chromium, LIVE) as b:
        b.open(f"{flow.orders}/console#token=dev-viewer-vic&instance={iid}")
        b.wait_for(f"document.querySelector('#detail h3')?.innerText.includes('{iid}')", "it")
        b.click("#diagnose")
        b.wait_for("!!document.querySelector('#diagnosis li')", what="the diagnosis")
        first = b.text("#diagnosis li")
        assert first.startswith("it waits for the events approval_outcome, approval_stage, cancel")
        panel = b.text("#diagnosis")
        assert "Waits for events: approval_outcome, approval_stage, cancel" in panel
        assert "timer due" in panel and "UTC" in panel
        assert "workflow workers: 1" in panel
        b.evaluate("document.getElementById('status').value = 'stuck'")
        b.evaluate("document.getElementById('status').onchange()")
        b.wait_for("document.getElementById('last-head').innerText === 'Why stuck'", "the column")
        b.wait_for(
            "document.getElementById('total').innerText.includes('stuck instances')", "the total"
        )
        listed = b.evaluate("[...document.querySelectorAll('#rows tr')].map((r) => r.dataset.id)")
        assert iid not in listed  # waiting for a person before its deadline is not stuck
        retention = b.text("#retention")  # the shared stack keeps the default schedule
        assert retention.startswith("Retention: finished instances older than 90 days are ")
        assert "purged on schedule 0 30 3 * * 0; next " in retention and " UTC;" in retention


def test_the_overview_links_each_figure_to_its_list_and_an_instance_to_its_trace(
    flow: Flow, chromium: str, tmp_path: Path
) -> None:
    order = flow.place("42.00")
    flow.finished(order.order_id)
    waiting = frozen_pending(flow, "1400")
    marker = unique("not-an-order")
    garbage = {"specversion": "1.0", "id": marker, "source": "e2e", "type": "t", "data": {}}
    flow.publish(json.dumps(garbage).encode(), "orders")
    eventually(
        lambda: any(
            d["event_id"] == marker for d in flow.http.get(f"{flow.orders}/deadletters").json()
        ),
        what="the malformed order among the dead letters",
    )
    jaeger = flow.stack.tracing.ui_url  # type: ignore[union-attr]
    with cdp.browser(chromium, LIVE) as b:
        b.open(f"{flow.orders}/console#token=dev-viewer-vic")
        b.wait_for("document.querySelectorAll('#by-status a.goto').length", what="the overview")
        assert f"Traces: {jaeger}" in b.text("#traces")
        assert (
            b.evaluate("getComputedStyle(document.getElementById('approvals-card')).display")
            == "none"
        )
        b.screenshot(tmp_path / "overview.png")
        # Dead letters on `orders` -> the list of them, with the one just refused.
        b.click('#by-topic a.goto[data-topic="orders"]')
        b.wait_for(
            f"document.getElementById('deadletter-rows').innerText.includes('{marker}')", "it"
        )
        assert "OrderPlaced is invalid" in b.text("#deadletter-rows")
        topics = (
            "[...document.querySelectorAll('#deadletter-rows tr')].map(r => r.cells[0].innerText)"
        )
        assert set(b.evaluate(topics)) == {"orders"}
        # Completed instances -> the workflow list, filtered to them.
        b.click('nav button[data-view="overview"]')
        b.wait_for("document.querySelectorAll('#by-status a.goto').length", what="the overview")
        b.click('#by-status a.goto[data-status="COMPLETED"]')
        b.wait_for(
            f"document.getElementById('rows').innerText.includes('order-{order.order_id}')", "it"
        )
        badges = b.evaluate("[...document.querySelectorAll('#rows .badge')].map(x => x.innerText)")
        assert set(badges) == {"COMPLETED"}
        # An instance -> its trace in Jaeger, which holds that instance's activities.
        b.click(f'tr.row[data-id="order-{order.order_id}"]')
        href = b.wait_for("document.querySelector('#detail a.trace')?.href", what="a trace link")
    assert href.startswith(f"{jaeger}/trace/")
    found = flow.http.get(f"{jaeger}/api/traces/{href.rsplit('/', 1)[1]}").json()["data"][0]
    tags = {
        t["value"]
        for s in found["spans"]
        for t in s["tags"]
        if t["key"] == "dapr.ext.workflow._durabletask.task.instance_id"
    }
    assert f"order-{order.order_id}" in tags
    # The approvals console: approvals waiting by tier, each figure opening the inbox.
    with cdp.browser(chromium, LIVE) as b:
        b.open(f"{flow.approvals}/console#token=dev-manager-bob")
        b.wait_for("document.querySelectorAll('#by-tier tr').length", what="approvals by tier")
        tiers = b.evaluate(
            "Object.fromEntries([...document.querySelectorAll('#by-tier tr')]"
            ".map(r => [r.cells[0].innerText, Number(r.cells[1].innerText)]))"
        )
        assert tiers["manager"] >= 1
        b.click("#by-tier a.goto")
        b.wait_for(
            f"document.getElementById('inbox-rows').innerText.includes('{waiting.order_id}')", "it"
        )
