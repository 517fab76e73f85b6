"""Decision links: made by the notifier's key, readable only if nobody altered them."""

import base64
import json
from datetime import UTC, datetime

import pytest

from contracts.links import LINK_TYPE, BadLink, DecisionLink, make_token, read_token
from contracts.messages import Tier
from contracts.signing import KEY_ID, SIGNATURE, Verifier
from tests.fakes import FakeSecrets, dev_signer

DUE = datetime(2026, 11, 26, 13, tzinfo=UTC)
LINK = DecisionLink(approver_id="bob", order_id="o-1", stage=1, tier="manager", expires_at=DUE)


def notifier_keys() -> Verifier:
    return Verifier.from_secret(FakeSecrets().get("localsecretstore", "notifier-verify-keys"))


def test_a_link_reads_back_as_it_was_made() -> None:
    token = make_token(LINK, dev_signer("notifier"))
    assert read_token(token, notifier_keys()) == LINK
    assert LINK.link_id == "o-1/s1/bob"
    assert not LINK.expired(datetime(2026, 11, 26, 12, 59, tzinfo=UTC)) and LINK.expired(DUE)


def test_a_link_for_another_approver_or_stage_does_not_verify() -> None:
    token = make_token(LINK, dev_signer("notifier"))
    _, key, sig = token.split(".")
    for other in (
        LINK.model_copy(update={"approver_id": "mia"}),
        LINK.model_copy(update={"stage": 2, "tier": Tier.VP}),
    ):
        forged = make_token(other, dev_signer("notifier")).split(".")[0]
        with pytest.raises(BadLink, match="altered"):
            read_token(f"{forged}.{key}.{sig}", notifier_keys())


def test_links_of_different_orders_stages_and_approvers_never_share_an_id() -> None:
    one = LINK.model_copy(update={"order_id": "a", "stage": 1, "approver_id": "s2-x"})
    other = LINK.model_copy(update={"order_id": "a-s1", "stage": 2, "approver_id": "x"})
    assert one.link_id != other.link_id


def signed_with(link_id: str) -> str:
    """LINK's token, its signature made over `link_id` as the id."""
    data = LINK.model_dump(mode="json")
    sig = dev_signer("notifier").sign(LINK_TYPE, link_id, data)
    payload = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    text = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{text}.{sig[KEY_ID]}.{sig[SIGNATURE].rstrip('=')}"


def test_links_signed_with_the_new_id_or_mailed_before_it_both_read() -> None:
    for link_id in ("o-1/s1/bob", "o-1-s1-bob"):
        assert read_token(signed_with(link_id), notifier_keys()) == LINK
    with pytest.raises(BadLink, match="altered"):
        read_token(signed_with("o-1/s1/mia"), notifier_keys())


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("nonsense", "not a decision link"),
        ("a.b.c", "cannot be read"),
        ("x" * 2000, "not a decision link"),
    ],
)
def test_what_is_no_link_is_refused_clearly(token: str, says: str) -> None:
    with pytest.raises(BadLink, match=says):
        read_token(token, notifier_keys())


def test_a_link_signed_by_another_app_is_refused() -> None:
    token = make_token(LINK, dev_signer("approvals"))
    with pytest.raises(BadLink, match="not trusted"):
        read_token(token, notifier_keys())
