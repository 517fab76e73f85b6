"""Signed messages: what the approvals service signs, its consumers can tell from a forgery."""

import json

import pytest

from contracts.envelope import Unverified, unwrap, wrap
from contracts.messages import DecisionSubmitted
from contracts.signing import BadSignature, Signer, UnusableKey, Verifier, new_key_pair

DECISION = DecisionSubmitted.model_validate(
    {
        "decision_id": "d-1",
        "order_id": "o-1",
        "approved": True,
        "approver_id": "val",
        "approver_role": "vp",
        "decided_at": "2026-11-23T10:00:00Z",
    }
)


def pair(kid: str) -> tuple[Signer, dict[str, str]]:
    signing, public = new_key_pair(kid)
    return Signer.from_secret(signing), public


def test_a_signed_message_verifies_and_names_its_key() -> None:
    signer, public = pair("k1")
    body = wrap(DECISION, "approvals", signer)
    event_id, message = unwrap(body, DecisionSubmitted, verifier=Verifier.from_secret(public))
    assert (event_id, message) == ("d-1", DECISION)
    assert json.loads(body)["signingkey"] == "k1"


def test_rotation_trusts_the_old_and_the_new_key_at_once() -> None:
    old, old_public = pair("k1")
    new, new_public = pair("k2")
    both = Verifier.from_secret(old_public | new_public)
    for signer in (old, new):
        unwrap(wrap(DECISION, "approvals", signer), DecisionSubmitted, verifier=both)
    with pytest.raises(Unverified, match="not trusted"):
        unwrap(
            wrap(DECISION, "approvals", old),
            DecisionSubmitted,
            verifier=Verifier.from_secret(new_public),
        )


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda e: e.pop("signature"), "unsigned"),
        (lambda e: e["data"].update(approver_id="mallory"), "does not match"),
        (lambda e: e.update(id="d-2"), "does not match"),
        (lambda e: e.update(type="order-approvals.ApprovalOutcome.v1"), "does not match"),
        (lambda e: e.update(signature="!!"), "does not match"),
    ],
)
def test_anything_changed_after_signing_is_refused(change, says: str) -> None:
    signer, public = pair("k1")
    event = json.loads(wrap(DECISION, "approvals", signer))
    change(event)
    with pytest.raises(Unverified, match=says):
        unwrap(json.dumps(event).encode(), DecisionSubmitted, verifier=Verifier.from_secret(public))


def test_without_a_verifier_nothing_is_checked() -> None:
    assert unwrap(wrap(DECISION, "shop"), DecisionSubmitted)[1] == DECISION


def test_signed_if_asks_a_signature_only_of_the_messages_it_names() -> None:
    signer, public = pair("k1")

    def read(body: bytes) -> DecisionSubmitted:
        def vp(m: DecisionSubmitted) -> bool:
            return m.approver_role == "vp"

        verifier = Verifier.from_secret(public)
        return unwrap(body, DecisionSubmitted, verifier=verifier, signed_if=vp)[1]

    manager = DecisionSubmitted.model_validate(
        DECISION.model_dump(mode="json") | {"approver_role": "manager"}
    )
    assert read(wrap(manager, "shop")) == manager
    assert read(wrap(DECISION, "approvals", signer)) == DECISION
    with pytest.raises(Unverified, match="unsigned"):
        read(wrap(DECISION, "shop"))


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        ({"key_id": "k1"}, "needs key_id and private_key"),
        ({"key_id": "k1", "private_key": "not base64!"}, "not base64"),
        ({"key_id": "k1", "private_key": "AAAA"}, "32-byte"),
        ({"key_id": "bad id", "private_key": "A" * 43 + "="}, "key id"),
    ],
)
def test_unusable_signing_keys_say_why(secret: dict[str, str], says: str) -> None:
    with pytest.raises(UnusableKey, match=says):
        Signer.from_secret(secret)


def test_a_verifier_needs_at_least_one_key() -> None:
    with pytest.raises(UnusableKey, match="no verification keys"):
        Verifier.from_secret({})
    with pytest.raises(BadSignature, match="unsigned"):
        Verifier.from_secret(pair("k1")[1]).verify({"type": "t", "id": "i"}, {})


def test_approvals_ctl_makes_a_usable_key_pair(capsys: pytest.CaptureFixture[str]) -> None:
    from approvals_ctl.__main__ import main

    assert main(["keys", "new", "--for", "approvals", "--key-id", "approvals-2026-11"]) == 0
    made = json.loads(capsys.readouterr().out)
    signer = Signer.from_secret(made["signing-key"])
    verifier = Verifier.from_secret(made["approvals-verify-keys"])
    unwrap(wrap(DECISION, "approvals", signer), DecisionSubmitted, verifier=verifier)
    assert main(["keys", "new", "--for", "orders", "--key-id", "no spaces"]) == 2
