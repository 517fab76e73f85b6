"""The audit log through the orders app, against an attacker who can write the state store but
cannot read the secret store; fakes at the gateway seam."""

import hashlib
import hmac
import json
import secrets
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from approvals.app import create_app as create_approvals
from approvals.readmodel import save_view
from contracts.messages import DecisionSubmitted, OrderPlaced, Tier
from orders.app import create_app
from plumbing import audit_reader
from plumbing.audit import LATEST_KEY, AuditLog, checkpoint_key, record_key
from plumbing.audit_keys import AuditConfigError, Keyring
from plumbing.refusals import RefusalLimiter
from plumbing.settings import ServiceSettings
from tests.fakes import LOCAL, SECRETS, TEST_AUDIT_KEY, FakeStateStore, bearer, development
from tests.service.conftest import AppFactory, deliver
from tests.service.test_approvals_service import view
from tests.unit.test_refusals import Clock

SETTINGS = ServiceSettings(app_id="orders", audit_checkpoint_every=10)


@pytest.fixture
def ops(client: AppFactory) -> TestClient:
    return client(create_app, SETTINGS, who="operator")


def place(c: TestClient, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        order = {"order_id": f"o-{i}", "customer_id": "c", "amount": "10.00", "currency": "EUR"}
        assert c.post("/orders", json=order).status_code == 202


def verdict(c: TestClient, **params) -> dict:
    resp = c.get("/audit/verify", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def forge(body: dict, kind: str, key: bytes = b"a guess at the key, 32 chars long") -> str:
    """What an attacker without the key can compute: a MAC under some other key."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, f"{kind}\n{text}".encode(), hashlib.sha256).hexdigest()


def test_an_intact_log_verifies_and_hands_out_an_anchor(ops: TestClient) -> None:
    place(ops, 3)
    v = verdict(ops)
    assert (v["intact"], v["summary"], v["records"]) == (True, "3 records, chain intact", 3)
    assert v["anchor"]["count"] == 3 and len(v["anchor"]["head"]) == 64


def test_deleting_the_last_records_is_named(ops: TestClient, gateway) -> None:
    place(ops, 5)
    gateway.state.delete(record_key(5))
    gateway.state.delete(record_key(4))
    v = verdict(ops)
    assert v["intact"] is False
    assert v["summary"].startswith("records 4..5 are missing: the latest checkpoint (of ")
    assert v["summary"].endswith("saw 5 records; the log was cut after record 3 (and 1 more)")
    assert v["problems"][1] == (
        "records 4..5 are missing: this app saw 5 records; the log was cut after record 3"
    )


def test_a_cut_with_a_forged_or_deleted_checkpoint_is_caught(ops: TestClient, gateway) -> None:
    place(ops, 5)
    three, _ = gateway.state.get(record_key(3))
    for seq in (4, 5):
        gateway.state.delete(record_key(seq))
    latest, etag = gateway.state.get(LATEST_KEY)
    moved = {**latest, "count": 3, "head": three["mac"]}
    moved["mac"] = forge({k: v for k, v in moved.items() if k != "mac"}, "audit-checkpoint orders")
    gateway.state.put(LATEST_KEY, moved, etag=etag)
    assert verdict(ops)["problems"][0] == (
        "the latest checkpoint was altered (its MAC does not match its content)"
    )
    gateway.state.delete(LATEST_KEY)
    assert verdict(ops)["problems"][0] == (
        f"the latest checkpoint ({LATEST_KEY}) is missing, yet the log holds 3 records: "
        "it was deleted, perhaps to hide a cut"
    )


def test_an_append_that_finds_the_checkpoint_deleted_restores_it_and_says_so(
    ops: TestClient, gateway
) -> None:
    place(ops, 3)
    gateway.state.delete(LATEST_KEY)
    gateway.state.refuse_writes = (LATEST_KEY,)  # and it cannot be written back yet
    place(ops, 1, start=3)
    gateway.state.refuse_writes = ()
    place(ops, 1, start=4)
    records = ops.get("/audit").json()
    assert [(r["seq"], r["action"], r["outcome"]) for r in records[3:]] == [
        (4, "place_order", "ok"),
        (5, "audit_checkpoint_restored", "anomaly"),
        (6, "place_order", "ok"),
        (7, "audit_checkpoint_restored", "anomaly"),
    ]
    assert records[4]["reason"] == (
        "the latest checkpoint was missing with 3 records in the log; restored at record 4"
    )
    assert gateway.state.get(LATEST_KEY)[0]["count"] == 7
    assert verdict(ops, full=True)["intact"] is True


def test_a_rollback_of_records_and_checkpoints_is_caught_by_an_anchor(
    client: AppFactory, gateway
) -> None:
    first = client(create_app, SETTINGS, who="operator")
    place(first, 3)
    saved = {k: v for k, (v, _) in gateway.state.data.items() if k.startswith("audit")}
    anchor = verdict(first)["anchor"]
    place(first, 2, start=3)
    anchor_after = verdict(first)["anchor"]
    # Someone with write access to the store puts back the log as it was at 3 records.
    for key in [k for k in gateway.state.data if k.startswith("audit")]:
        gateway.state.delete(key)
    for key, value in saved.items():
        gateway.state.put(key, value)
    assert verdict(first)["problems"] == [
        "records 4..5 are missing: this app saw 5 records; the log was cut after record 3"
    ]
    restarted = client(create_app, SETTINGS, who="viewer")  # a new process remembers nothing
    assert verdict(restarted)["intact"] is True  # what the store alone cannot prove
    assert verdict(restarted, anchor_count=anchor["count"], anchor_head=anchor["head"])["intact"]
    caught = verdict(
        restarted, anchor_count=anchor_after["count"], anchor_head=anchor_after["head"]
    )
    assert caught["summary"] == (
        "records 4..5 are missing: your anchor saw 5 records; the log was cut after record 3"
    )


def test_rewriting_a_record_and_rechaining_after_it_is_caught(ops: TestClient, gateway) -> None:
    place(ops, 4)
    prev = None
    for seq in range(2, 5):  # the attacker rewrites record 2 and recomputes everything after it
        rec, etag = gateway.state.get(record_key(seq))
        rec = {**rec, "actor": "mallory"} if seq == 2 else rec
        rec["prev"] = prev or rec["prev"]
        rec["mac"] = forge({k: v for k, v in rec.items() if k != "mac"}, "audit-record orders")
        gateway.state.put(record_key(seq), rec, etag=etag)
        prev = rec["mac"]
    v = verdict(ops, full=True)
    assert v["intact"] is False
    assert v["problems"][0].startswith("record 4 is not the one the latest checkpoint (of ")
    assert v["problems"][1:] == [
        *(f"record {seq} was altered (its MAC does not match its content)" for seq in (2, 3, 4)),
        "record 4 is not the one this app saw: it was rewritten",
    ]


def test_a_record_copied_from_another_apps_log_does_not_verify() -> None:
    keys = Keyring.parse(TEST_AUDIT_KEY)
    orders, approvals = (AuditLog(FakeStateStore(), keys, name) for name in ("orders", "approvals"))
    for log in (orders, approvals):
        log.append(actor="ada", role="admin", action="a", target="t", outcome="ok")
    raw, _ = orders.state.get(record_key(1))
    _, etag = approvals.state.get(record_key(1))
    approvals.state.put(record_key(1), raw, etag=etag)
    assert "record 1 was altered (its MAC does not match its content)" in (
        audit_reader.verify(approvals).problems
    )


def test_by_default_verify_starts_at_the_last_checkpoint(ops: TestClient, gateway) -> None:
    place(ops, 25)  # numbered checkpoints at 10 and 20
    assert gateway.state.get(checkpoint_key(20))[0]["count"] == 20
    rec, etag = gateway.state.get(record_key(5))
    gateway.state.put(record_key(5), {**rec, "outcome": "refused 403: not me"}, etag=etag)
    quick = verdict(ops)
    assert quick["intact"] is True and quick["checked_from"] == 21
    assert quick["summary"] == (
        "25 records, chain intact since the checkpoint at record 20 (records 21..25 checked; "
        "full=true checks every record)"
    )
    assert verdict(ops, full=True)["problems"] == [
        "record 5 was altered (its MAC does not match its content)"
    ]
    rec, etag = gateway.state.get(record_key(22))
    gateway.state.put(record_key(22), {**rec, "target": "o-x"}, etag=etag)
    assert verdict(ops)["problems"] == [
        "record 22 was altered (its MAC does not match its content)"
    ]


def test_deleted_or_forged_numbered_checkpoints_are_named(ops: TestClient, gateway) -> None:
    place(ops, 25)
    gateway.state.delete(checkpoint_key(10))
    cp, etag = gateway.state.get(checkpoint_key(20))
    gateway.state.put(checkpoint_key(20), {**cp, "count": 19}, etag=etag)
    assert verdict(ops)["problems"][0] == (
        "checkpoint 20 was altered (its MAC does not match its content)"
    )
    assert verdict(ops, full=True)["problems"] == [
        "checkpoint 10 is missing: it was deleted",
        "checkpoint 20 was altered (its MAC does not match its content)",
    ]


def test_a_missing_record_in_the_middle_is_named(ops: TestClient, gateway) -> None:
    place(ops, 6)
    gateway.state.delete(record_key(3))
    gateway.state.delete(record_key(4))
    assert verdict(ops, full=True)["problems"] == ["records 3..4 are missing: they were deleted"]


def test_audit_records_are_read_a_page_at_a_time(ops: TestClient) -> None:
    place(ops, 25)
    newest = ops.get("/audit", params={"limit": 10})
    assert [r["seq"] for r in newest.json()] == list(range(16, 26))
    assert newest.headers["x-audit-last-seq"] == "25"
    assert newest.headers["link"] == '</audit?limit=10&before_seq=16>; rel="prev"'
    older = ops.get("/audit", params={"limit": 10, "before_seq": 16})
    assert [r["seq"] for r in older.json()] == list(range(6, 16))
    assert older.headers["link"] == (
        '</audit?limit=10&before_seq=6>; rel="prev", </audit?limit=10&after_seq=15>; rel="next"'
    )
    oldest = ops.get("/audit", params={"limit": 10, "before_seq": 6})
    assert [r["seq"] for r in oldest.json()] == [1, 2, 3, 4, 5] and "prev" not in oldest.headers[
        "link"
    ]
    newer = ops.get("/audit", params={"limit": 3, "after_seq": 20})
    assert [r["seq"] for r in newer.json()] == [21, 22, 23]
    assert newer.headers["link"].endswith('</audit?limit=3&after_seq=23>; rel="next"')
    picked = ops.get("/audit", params={"target": "o-7", "limit": 5}).json()
    assert [(r["seq"], r["target"]) for r in picked] == [(8, "o-7")]
    both = ops.get("/audit", params={"before_seq": 5, "after_seq": 1})
    assert both.status_code == 422 and "not both" in both.json()["detail"]
    assert ops.get("/audit", params={"limit": 1001}).status_code == 422


def test_a_page_reads_a_bounded_number_of_records(gateway) -> None:
    log = AuditLog(gateway.state, Keyring.parse(TEST_AUDIT_KEY), "orders")
    for n in range(30):
        log.append(actor="ada", role="admin", action="a", target=f"t{n}", outcome="ok")
    page = audit_reader.page(log, limit=5, match=lambda r: r.target == "t0", scan=12)
    assert (page.records, page.older, page.newer) == ([], 19, None)
    page = audit_reader.page(log, limit=5, before=19, match=lambda r: r.target == "t0", scan=50)
    assert ([r.seq for r in page.records], page.older) == ([1], None)


def test_long_fields_are_cut_before_they_are_stored(client: AppFactory, gateway) -> None:
    c = client(create_app, SETTINGS, who="viewer")
    huge = "x" * 60_000
    resp = c.post(f"/workflows/{huge}/suspend", json={"reason": "r"}, headers={"Authorization": ""})
    assert resp.status_code in (401, 422)
    (stored,) = [v for k, (v, _) in gateway.state.data.items() if k.startswith("audit:")]
    assert len(json.dumps(stored)) < 2_000
    assert stored["target"].endswith(f"...[{60_000} chars]") and len(stored["target"]) == 200
    assert verdict(c)["intact"] is True


def test_a_flood_of_anonymous_refusals_is_counted_not_stored(client: AppFactory, gateway) -> None:
    settings = ServiceSettings(app_id="orders", audit_refusal_burst=5, audit_refusals_per_minute=0)
    app = create_app(development(settings), gateway=gateway)
    with TestClient(app, base_url=LOCAL, headers=bearer("viewer")) as c:
        for _ in range(30):
            anonymous = {"Authorization": ""}
            resp = c.post("/workflows/x/suspend", json={"reason": "r"}, headers=anonymous)
            assert resp.status_code == 401
        for _ in range(8):  # a caller with a token is accountable: all of these are recorded
            assert c.post("/workflows/x/suspend", json={"reason": "r"}).status_code == 403
        records = c.get("/audit", params={"limit": 100}).json()
        assert [r["outcome"][:11] for r in records] == ["refused 401"] * 5 + ["refused 403"] * 8
    # the app stopped: what was counted is written
    after = client(create_app, settings, who="viewer")
    (summary,) = after.get("/audit", params={"action": "refusals_suppressed"}).json()
    assert (summary["outcome"], summary["target"]) == ("suppressed 25", "testclient")
    assert summary["reason"].startswith("25 refused requests (25 x 401) from testclient between")
    assert verdict(after)["intact"] is True


def test_a_flood_of_forged_deliveries_is_counted_per_topic(client: AppFactory, gateway) -> None:
    settings = ServiceSettings(
        app_id="approvals", audit_refusal_burst=2, audit_refusals_per_minute=0
    )
    app = create_approvals(development(settings), gateway=gateway)
    with TestClient(app, base_url=LOCAL, headers=bearer("viewer")) as c:
        for n in range(5):
            forged = DecisionSubmitted(
                decision_id=f"d-forged-{n}",
                order_id="o-1",
                approved=True,
                approver_id="mallory",
                approver_role=Tier.VP,
                decided_at=datetime.now(UTC),
            )
            assert deliver(c, "decisions", forged, signed=False)["status"] == "DROP"
        assert [r["target"] for r in c.get("/audit").json()] == ["d-forged-0", "d-forged-1"]
    after = client(create_approvals, settings, who="viewer")
    (summary,) = after.get("/audit", params={"action": "refusals_suppressed"}).json()
    assert (summary["target"], summary["outcome"]) == (
        "unsigned deliveries on decisions",
        "suppressed 3",
    )
    assert "(3 x unsigned)" in summary["reason"]


def test_deliveries_without_the_app_token_are_audited_and_a_flood_counted_per_caller(
    client: AppFactory, gateway
) -> None:
    settings = ServiceSettings(
        app_id="orders", app_api_token="s3cret", audit_refusal_burst=1, audit_refusals_per_minute=0
    )
    app = create_app(development(settings), gateway=gateway)
    with TestClient(app, base_url=LOCAL, headers=bearer("viewer")) as c:
        for _ in range(3):
            resp = c.post("/events/orders", content=b"{}", headers={"dapr-api-token": "wrong"})
            assert resp.status_code == 401
        (refused,) = c.get("/audit", params={"action": "deliver orders"}).json()
        assert (refused["actor"], refused["target"], refused["outcome"]) == (
            "unknown caller",
            "orders",
            "refused 401: missing or wrong dapr-api-token",
        )
    after = client(create_app, settings, who="viewer")
    (summary,) = after.get("/audit", params={"action": "refusals_suppressed"}).json()
    assert (summary["target"], summary["outcome"]) == ("testclient", "suppressed 2")
    assert "(2 x 401)" in summary["reason"]


def test_a_flood_of_conflicting_duplicates_is_counted_per_topic(
    client: AppFactory, gateway
) -> None:
    settings = ServiceSettings(app_id="orders", audit_refusal_burst=1, audit_refusals_per_minute=0)
    app = create_app(development(settings), gateway=gateway)
    first = OrderPlaced(
        order_id="o-1", customer_id="c-1", amount="10", currency="EUR", placed_at=datetime.now(UTC)
    )
    with TestClient(app, base_url=LOCAL, headers=bearer("viewer")) as c:
        assert deliver(c, "orders", first)["status"] == "SUCCESS"
        for n in range(3):
            other = OrderPlaced.model_validate(first.model_dump() | {"amount": f"{11 + n}.00"})
            assert deliver(c, "orders", other)["status"] == "DROP"
        (refused,) = c.get("/audit", params={"action": "deliver orders"}).json()
        assert refused["outcome"].startswith("refused: conflicting duplicate: amount 11.00")
    after = client(create_app, settings, who="viewer")
    (summary,) = after.get("/audit", params={"action": "refusals_suppressed"}).json()
    assert (summary["target"], summary["outcome"]) == (
        "refused deliveries on orders",
        "suppressed 2",
    )
    assert "(2 x refused)" in summary["reason"]


def test_a_flooding_caller_let_through_again_first_gets_its_summary() -> None:
    clock = Clock()
    limiter = RefusalLimiter(burst=1, per_minute=60, clock=clock)
    log = AuditLog(FakeStateStore(), Keyring.parse(TEST_AUDIT_KEY), "orders", refusals=limiter)
    refusal = {"actor": "anonymous", "action": "a", "target": "t", "outcome": "refused 401: x"}
    written = [log.append_refusal("10.1.1.1", "401", **refusal) for _ in range(4)]
    assert [r.seq if r else None for r in written] == [1, None, None, None]
    clock.now += 1.0
    assert log.append_refusal("10.1.1.1", "401", **refusal).seq == 3
    summary = audit_reader.page(log, limit=10).records[1]
    assert (summary.action, summary.outcome) == ("refusals_suppressed", "suppressed 3")


def test_the_audit_key_comes_from_the_secret_store_and_is_checked(
    client: AppFactory, gateway
) -> None:
    dev_key = json.loads((SECRETS / "dev-secrets.json").read_text())["audit-key"]
    production_tokens = {secrets.token_urlsafe(32): "vic:viewer"}
    gateway.secrets.secrets = {"api-tokens": production_tokens, "audit-key": dev_key}
    with pytest.raises(AuditConfigError, match="'dev-1' is a development key"):
        TestClient(create_app(SETTINGS, gateway=gateway)).__enter__()  # development=False
    gateway.secrets.secrets = {"audit-key": dev_key}
    dev = client(create_app, SETTINGS, who="operator")  # a development stack may use it
    place(dev, 1)
    assert dev.get("/audit").json()[0]["kid"] == "dev-1"
    gateway.secrets.secrets = {"audit-key": {"current": "k1", "k1": "too short"}}
    with pytest.raises(AuditConfigError, match="'k1' is shorter than 32 characters"):
        client(create_app, SETTINGS)
    with pytest.raises(AuditConfigError, match="cannot read secret 'nope'"):
        client(create_app, ServiceSettings(app_id="orders", audit_key_secret="nope"))
    with pytest.raises(AuditConfigError, match=r"'current' \('k9'\) must name one of its keys"):
        Keyring.parse({"current": "k9", "k1": "k" * 32})


def test_keys_rotate_and_old_ones_are_needed_only_for_full_checks(
    client: AppFactory, gateway
) -> None:
    k1, k2 = "first-key-" + "1" * 30, "second-key-" + "2" * 30
    gateway.secrets.secrets = {"audit-key": {"current": "k1", "k1": k1}}
    place(client(create_app, SETTINGS, who="operator"), 12)  # checkpoint 10 under k1
    gateway.secrets.secrets = {"audit-key": {"current": "k2", "k1": k1, "k2": k2}}
    rotated = client(create_app, SETTINGS, who="operator")
    place(rotated, 12, start=12)  # checkpoint 20 under k2
    assert {r["kid"] for r in rotated.get("/audit", params={"limit": 24}).json()} == {"k1", "k2"}
    assert verdict(rotated, full=True)["intact"] is True
    gateway.secrets.secrets = {"audit-key": {"current": "k2", "k2": k2}}
    retired = client(create_app, SETTINGS, who="viewer")
    assert verdict(retired)["intact"] is True
    assert verdict(retired, full=True)["problems"][0] == (
        "record 1 is signed with key 'k1', unknown here"
    )


def test_nothing_changes_when_the_audit_log_cannot_be_written(ops: TestClient, gateway) -> None:
    gateway.workflows.add("wf-1")
    gateway.state.refuse_writes = ("audit",)
    resp = ops.post("/workflows/wf-1/suspend", json={"reason": "audit down"})
    assert resp.status_code == 503 and "audit log could not be written" in resp.json()["detail"]
    assert gateway.workflows.instances["wf-1"].status == "RUNNING"
    order = {"order_id": "o-1", "customer_id": "c", "amount": "10.00", "currency": "EUR"}
    assert ops.post("/orders", json=order).status_code == 503
    assert not gateway.publisher.published


def test_a_change_that_fails_after_its_record_gets_a_second_record(
    ops: TestClient, gateway
) -> None:
    gateway.workflows.add("wf-1")
    gateway.workflows.failing.add("suspend")
    resp = ops.post("/workflows/wf-1/suspend", json={"reason": "try"})
    assert resp.status_code == 503
    records = [(r["seq"], r["action"], r["outcome"], r["reason"]) for r in ops.get("/audit").json()]
    assert records == [
        (1, "suspend_workflow", "ok", "try"),
        (
            2,
            "suspend_workflow",
            "failed: suspend: the sidecar timed out",
            "record 1 did not complete; the change may not have been made",
        ),
    ]


@dataclass
class RacingStore(FakeStateStore):
    """Before each of the first `races` record claims, a rival writer takes that very place."""

    rival: AuditLog | None = None
    races: int = 0
    racing: bool = False

    def claim(self, key, value):
        if key.startswith("audit:") and self.races and self.rival and not self.racing:
            self.races, self.racing = self.races - 1, True
            self.rival.append(actor="rival", role="-", action="a", target="t", outcome="ok")
            self.racing = False
        return super().claim(key, value)


def test_a_writer_that_loses_race_after_race_still_records() -> None:
    keys = Keyring.parse(TEST_AUDIT_KEY)
    store = RacingStore()
    rival, loser = AuditLog(store, keys, "orders"), AuditLog(store, keys, "orders")
    store.rival, store.races = rival, 60
    written = loser.append(actor="ada", role="admin", action="a", target="mine", outcome="ok")
    assert written.seq == 61 and store.races == 0
    assert audit_reader.verify(loser, full=True).summary == "61 records, chain intact"


def test_concurrent_writers_in_two_replicas_lose_no_record() -> None:
    keys = Keyring.parse(TEST_AUDIT_KEY)
    store = FakeStateStore()
    replicas = [AuditLog(store, keys, "orders", checkpoint_every=7) for _ in range(2)]
    errors: list[Exception] = []

    def write(replica: AuditLog, writer: str) -> None:
        try:
            for n in range(40):
                replica.append(actor=writer, role="-", action="a", target=f"{n}", outcome="ok")
        except Exception as exc:  # pragma: no cover - shown by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(replicas[w % 2], f"w{w}")) for w in range(8)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the threads as often as the interpreter can
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    assert errors == []
    stored = [v for k, (v, _) in store.data.items() if k.startswith("audit:")]
    assert sorted(r["seq"] for r in stored) == list(range(1, 321))
    assert sorted((r["actor"], int(r["target"])) for r in stored) == sorted(
        (f"w{w}", n) for w in range(8) for n in range(40)
    )
    assert audit_reader.verify(replicas[0], full=True).summary == "320 records, chain intact"


def test_a_decision_is_recorded_before_it_is_published(client: AppFactory, gateway) -> None:
    approvals = client(create_approvals, ServiceSettings(app_id="approvals"), who="manager")
    save_view(gateway.state, view())
    gateway.state.refuse_writes = ("audit",)
    resp = approvals.post("/approvals/o-1/decisions", json={"approved": True, "reason": ""})
    assert resp.status_code == 503 and not gateway.publisher.published
    gateway.state.refuse_writes = ()
    assert approvals.post("/approvals/o-1/decisions", json={"approved": True}).status_code == 202
    (entry,) = approvals.get("/audit").json()
    (published,) = gateway.publisher.to("decisions")
    assert entry["outcome"].startswith("ok: approve ")
    assert entry["outcome"].endswith(f" as {published.message_id}")
