"""One-click decision links: what an approver's e-mail carries, signed by the notifier.

A link is bound to one approver, one order and one stage (with its tier), and expires when the
stage is due. It is `<payload>.<signature>`, both base64url: the payload is the link's JSON,
the signature the notifier's Ed25519 signature over it (contracts.signing, with the link type
and id in place of a CloudEvent's), so approvals can tell a link the notifier made from
anything else. The action (approve or reject) is part of the URL, not of what is signed: the
Approve and Reject links of one e-mail are one link, used once, whichever is confirmed.

Errors: BadLink (the text is no link, or its signature does not verify).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ValidationError

from contracts.messages import BusinessId, PersonId, Tier
from contracts.signing import KEY_ID, SIGNATURE, BadSignature, Signer, Verifier

LINK_TYPE = "order-approvals.DecisionLink.v1"
MAX_TOKEN = 1024


class BadLink(ValueError):
    """Not a decision link we made: malformed, altered, or signed by a key we do not trust."""


class Action(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class DecisionLink(BaseModel):
    """Who may decide what with one link, and until when."""

    approver_id: PersonId
    order_id: BusinessId
    stage: int
    tier: Tier
    expires_at: AwareDatetime

    @property
    def link_id(self) -> str:
        """One link per approver, order and stage: using it once uses it up. `/` cannot be in
        an order id (BusinessId) and the stage is digits, so no two links share an id."""
        return f"{self.order_id}/s{self.stage}/{self.approver_id}"

    @property
    def legacy_id(self) -> str:
        """The id links were signed with and used up under before the release that introduced
        link_id: ambiguous ("a", 1, "s2-x" and "a-s1", 2, "x" share it), so read only."""
        return f"{self.order_id}-s{self.stage}-{self.approver_id}"

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(link: DecisionLink, signer: Signer) -> str:
    """The link as URL-safe text: `<payload>.<key id>.<signature>`."""
    data = link.model_dump(mode="json")
    sig = signer.sign(LINK_TYPE, link.link_id, data)
    payload = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{sig[KEY_ID]}.{sig[SIGNATURE].rstrip('=')}"


def read_token(token: str, verifier: Verifier) -> DecisionLink:
    """The link a token stands for, once its signature verifies; BadLink otherwise."""
    if len(token) > MAX_TOKEN or token.count(".") != 2:
        raise BadLink("this is not a decision link (it may have been cut short in the e-mail)")
    payload, key_id, sig = token.split(".")
    try:
        data = json.loads(_unb64(payload))
        link = DecisionLink.model_validate(data)
    except (binascii.Error, ValueError, ValidationError):
        raise BadLink("this is not a decision link: its content cannot be read") from None
    # Links mailed before link_id changed were signed with legacy_id; the signature covers the
    # whole payload either way, so accepting it lets nobody decide more.
    failed: BadSignature | None = None
    for link_id in (link.link_id, link.legacy_id):
        attrs = {"type": LINK_TYPE, "id": link_id, KEY_ID: key_id, SIGNATURE: sig + "=" * 2}
        try:
            verifier.verify(attrs, link.model_dump(mode="json"))
            return link
        except BadSignature as exc:
            failed = failed or exc
    raise BadLink(f"this link was not made by the notifier or was altered ({failed})")
