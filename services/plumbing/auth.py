"""Bearer tokens -> principals with roles, read once from a Dapr secret store.

The secret (default: store "localsecretstore", secret "api-tokens") maps each token to
"<principal>:<role>[,<role>...][:<approver level>]", e.g. "bob:approver:manager" or "ada:admin".
Tokens are kept only as SHA-256 digests and never logged. An entry's key may itself be a digest,
"sha256:<64 hex digits>", so that the secret (and any app that reads it) holds no usable token;
`approvals-ctl tokens new` makes such entries. Outside development (DEV_MODE) a plain token must
be long and random: at least 32 characters, and not one of the readable `dev-` ones.

Roles: viewer reads; operator and admin mutate; admin alone runs bulk jobs; approver (level
manager or vp) decides approvals. Every authenticated principal may read.

Errors: AuthConfigError (the token table is unusable: startup fails with the reason),
Unauthenticated (401), Forbidden (403).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request

from contracts.messages import Tier


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    APPROVER = "approver"
    VIEWER = "viewer"


class AuthConfigError(ValueError):
    """The token table cannot be read or parsed."""


class Unauthenticated(Exception):
    """No token, or one we do not know (401)."""


class Forbidden(Exception):
    """The principal's roles do not allow this (403)."""


@dataclass(frozen=True)
class Principal:
    id: str
    roles: frozenset[Role]
    level: Tier | None = None  # for approvers

    @property
    def role(self) -> str:
        """The principal's roles as one string, for the audit log."""
        text = ",".join(sorted(r.value for r in self.roles))
        return f"{text}:{self.level.value}" if self.level else text


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# A production token is long and random (e.g. secrets.token_urlsafe(32), 43 characters).
MIN_TOKEN_LENGTH = 32
# An entry may name a token by its SHA-256 digest, so the secret holds no usable token.
DIGEST_PREFIX = "sha256:"
_HEX64 = re.compile(r"[0-9a-f]{64}")
DEV_MIN_TOKEN_LENGTH = 8
DEV_PREFIX = "dev-"


@dataclass(frozen=True)
class TokenTable:
    by_digest: Mapping[str, Principal]

    @classmethod
    def parse(cls, raw: Mapping[str, str], *, development: bool = False) -> TokenTable:
        """Build from {token: "principal:roles[:level]"}; raise AuthConfigError naming the entry
        (its number and principal, never the token). Short and `dev-` tokens pass only in
        development."""
        table: dict[str, Principal] = {}
        for n, (token, spec) in enumerate(sorted(raw.items()), start=1):
            parts = str(spec).split(":")
            if len(parts) not in (2, 3) or not parts[0]:
                raise AuthConfigError(
                    f"api token entry {n}: expected a token mapped to "
                    "'principal:role[,role][:level]'"
                )
            entry = f"api token entry {n} ({parts[0]})"
            digest = _entry_digest(token, entry, development)
            try:
                roles = frozenset(Role(r.strip()) for r in parts[1].split(","))
                level = Tier(parts[2]) if len(parts) == 3 else None
            except ValueError as exc:
                raise AuthConfigError(f"{entry}: {exc}") from None
            if (Role.APPROVER in roles) != (level is not None):
                raise AuthConfigError(
                    f"{entry}: an approver needs a level (manager or vp), and only an approver "
                    "has one"
                )
            table[digest] = Principal(parts[0], roles, level)
        return cls(table)

    def lookup(self, token: str) -> Principal | None:
        return self.by_digest.get(_digest(token))


def _entry_digest(token: str, entry: str, development: bool) -> str:
    """The digest an entry stands for: given ("sha256:<hex>") or of a checked plain token."""
    if token.startswith(DIGEST_PREFIX):
        digest = token.removeprefix(DIGEST_PREFIX).lower()
        if not _HEX64.fullmatch(digest):
            raise AuthConfigError(f"{entry}: a digest entry needs 64 hex digits")
        return digest
    _check_token(token, entry, development)
    return _digest(token)


def new_token_entry() -> tuple[str, str]:
    """A fresh random token and the token-table key that names it by digest only."""
    token = secrets.token_urlsafe(32)
    return token, DIGEST_PREFIX + _digest(token)


def _check_token(token: str, entry: str, development: bool) -> None:
    """Refuse a guessable token; the message names the entry, never the token."""
    if development:
        if len(token) < DEV_MIN_TOKEN_LENGTH:
            raise AuthConfigError(
                f"{entry}: a token needs at least {DEV_MIN_TOKEN_LENGTH} characters"
            )
        return
    if token.lower().startswith(DEV_PREFIX):
        raise AuthConfigError(
            f"{entry}: '{DEV_PREFIX}' tokens are for development only (DEV_MODE=true); "
            "use a long random token"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise AuthConfigError(
            f"{entry}: a token needs at least {MIN_TOKEN_LENGTH} random characters, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


def authenticate(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer <token>`."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer <token>")
    tokens: TokenTable = request.app.state.tokens
    principal = tokens.lookup(token.strip())
    if principal is None:
        raise Unauthenticated("unknown token")
    request.state.principal = principal
    return principal


def requires(*roles: Role) -> Callable[..., Principal]:
    """A dependency that lets through a principal holding any of `roles`."""

    def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.roles & set(roles):
            allowed = " or ".join(r.value for r in roles)
            raise Forbidden(f"{principal.id} may not do this: it needs {allowed}")
        return principal

    return check


Reader = Annotated[Principal, Depends(authenticate)]
Operator = Annotated[Principal, Depends(requires(Role.OPERATOR, Role.ADMIN))]
Admin = Annotated[Principal, Depends(requires(Role.ADMIN))]
Approver = Annotated[Principal, Depends(requires(Role.APPROVER))]
