"""The approval policy as data: tiers, deadlines, escalation and approver authority.

Pure Python: no FastAPI, no Dapr. A snapshot of the policy (`ApprovalPolicy.model_dump`) goes
into each workflow's input, so a running order keeps the rules it started with and replay stays
deterministic.

Errors: PolicyError (a setting is invalid; the message names the field).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from contracts.messages import DEFAULT_CURRENCIES, DEFAULT_MAX_AMOUNT, MessageLimits, Tier

_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_ISO = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class PolicyError(ValueError):
    """A policy setting is invalid; the message names the field."""


def parse_duration(value: Any) -> timedelta:
    """Parse "72h", "1h30m", "500ms" (Go style) or "P3D", "PT5S" (ISO-8601) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    text = str(value).strip()
    seconds: float | None = None
    iso = _ISO.match(text.upper())
    if iso and text.upper() not in ("P", "PT") and any(iso.groupdict().values()):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v}
        seconds = (
            parts.get("d", 0) * 86400
            + parts.get("h", 0) * 3600
            + parts.get("m", 0) * 60
            + parts.get("s", 0)
        )
    elif text and _GO_PART.sub("", text) == "":
        seconds = sum(float(n) * _GO_UNITS[u] for n, u in _GO_PART.findall(text))
    if seconds is None:
        raise ValueError(f"{value!r} is not a duration; use Go style (72h, 90s) or ISO-8601 (P3D)")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class OnManagerTimeout(StrEnum):
    ESCALATE_TO_VP = "escalate_to_vp"
    REJECT = "reject"


class ApprovalPolicy(BaseModel):
    """The business rules; the defaults are the ones the business agreed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auto_approve_below: Annotated[Decimal, Field(ge=0)] = Decimal("500")
    manager_limit: Annotated[Decimal, Field(gt=0)] = Decimal("5000")
    manager_deadline: Duration = timedelta(days=3)
    vp_deadline: Duration = timedelta(days=5)
    on_manager_timeout: OnManagerTimeout = OnManagerTimeout.ESCALATE_TO_VP
    # The order workflow gives up waiting for an outcome after this long.
    order_backstop: Duration = timedelta(days=10)
    currencies: frozenset[str] = DEFAULT_CURRENCIES
    max_amount: Annotated[Decimal, Field(gt=0)] = DEFAULT_MAX_AMOUNT

    @model_validator(mode="after")
    def _consistent(self) -> ApprovalPolicy:
        for name in ("manager_deadline", "vp_deadline", "order_backstop"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        if self.manager_limit < self.auto_approve_below:
            raise ValueError("manager_limit must not be below auto_approve_below")
        longest = self.vp_deadline + (
            self.manager_deadline
            if self.on_manager_timeout is OnManagerTimeout.ESCALATE_TO_VP
            else timedelta(0)
        )
        if self.order_backstop < longest:
            raise ValueError(
                f"order_backstop ({self.order_backstop}) must cover the longest approval "
                f"({longest}); otherwise orders expire while an approver may still decide"
            )
        for code in self.currencies:
            if not re.fullmatch(r"[A-Z]{3}", code):
                raise ValueError(f"currencies: {code!r} is not an ISO-4217 code")
        return self

    @property
    def limits(self) -> MessageLimits:
        return MessageLimits(max_amount=self.max_amount, currencies=self.currencies)

    def tier_for(self, amount: Decimal) -> Tier | None:
        """The first approval tier for `amount`, or None when it is approved automatically."""
        if amount < self.auto_approve_below:
            return None
        return Tier.MANAGER if amount <= self.manager_limit else Tier.VP

    def deadline_for(self, tier: Tier) -> timedelta:
        return self.manager_deadline if tier is Tier.MANAGER else self.vp_deadline

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready copy for a workflow input."""
        return self.model_dump(mode="json")


_RANK = {Tier.MANAGER: 1, Tier.VP: 2}


def covers(decided_at: Tier | None, needed: Tier) -> bool:
    """Whether an approval at stage level `decided_at` is enough for an order that needs
    `needed` (a VP's approval covers a manager's; nothing covers a missing level)."""
    return decided_at is not None and _RANK[decided_at] >= _RANK[needed]


def same_person(a: str, b: str) -> bool:
    """Identities compared as people, not spellings: "Bob", "bob" and "BOB" are one person."""

    def norm(x: str) -> str:
        return unicodedata.normalize("NFKC", x).casefold().strip()

    return norm(a) == norm(b)


def authority_problem(
    *, stage_tier: Tier, approver_id: str, approver_role: Tier, customer_id: str
) -> str | None:
    """Why this approver may not decide this stage, or None when they may."""
    if same_person(approver_id, customer_id):
        return "approvers may not decide their own order"
    if stage_tier is Tier.VP and approver_role is not Tier.VP:
        return "a manager may not decide a VP stage"
    return None


ENV_PREFIX = "POLICY_"


def load_policy(env: Mapping[str, str] | None = None) -> ApprovalPolicy:
    """Defaults, then the YAML file named by POLICY_FILE, then POLICY_<FIELD> variables."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    path = env.get("POLICY_FILE")
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"cannot read policy file {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise PolicyError(f"policy file {path} must be a mapping of settings")
        values.update(loaded)
    for field in ApprovalPolicy.model_fields:
        key = ENV_PREFIX + field.upper()
        if key in env:
            raw: Any = env[key]
            values[field] = [c.strip() for c in raw.split(",")] if field == "currencies" else raw
    try:
        return ApprovalPolicy.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "policy"
            problems.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
        raise PolicyError("invalid approval policy: " + "; ".join(problems)) from None
