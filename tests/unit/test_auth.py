import json
import secrets

import pytest

from plumbing.auth import AuthConfigError, Role, TokenTable, new_token_entry
from tests.fakes import DEV_STORES

DEV_TOKENS: dict[str, str] = json.loads(DEV_STORES["localsecretstore"].read_text())["api-tokens"]


def refusal(raw: dict[str, str], development: bool = False) -> str:
    with pytest.raises(AuthConfigError) as err:
        TokenTable.parse(raw, development=development)
    message = str(err.value)
    assert not any(token in message for token in raw), "the error must not show a token"
    return message


def test_production_accepts_long_random_tokens() -> None:
    token = secrets.token_urlsafe(32)
    table = TokenTable.parse({token: "bob:approver:manager"})
    principal = table.lookup(token)
    assert principal is not None and principal.roles == {Role.APPROVER}


def test_production_refuses_a_short_token_naming_the_entry() -> None:
    says = refusal({"k" * 31: "ada:admin"})
    assert says.startswith("api token entry 1 (ada): a token needs at least 32 random characters")


def test_production_refuses_dev_tokens_however_long() -> None:
    says = refusal({secrets.token_urlsafe(32): "ada:admin", "dev-" + "x" * 40: "vic:viewer"})
    assert "(vic): 'dev-' tokens are for development only (DEV_MODE=true)" in says
    assert "dev-" in refusal(DEV_TOKENS)


def test_development_accepts_the_readable_dev_tokens_but_not_tiny_ones() -> None:
    table = TokenTable.parse(DEV_TOKENS, development=True)
    admin = table.lookup("dev-admin-ada")
    assert admin is not None and admin.id == "ada"
    assert "at least 8 characters" in refusal({"dev-a": "ada:admin"}, development=True)


def test_a_malformed_entry_is_named_without_its_token() -> None:
    token = secrets.token_urlsafe(32)
    assert refusal({token: "ada"}).startswith("api token entry 1: expected a token mapped to")
    assert "(ada): 'wizard' is not a valid Role" in refusal({token: "ada:wizard"})
    assert "(bob): an approver needs a level" in refusal({token: "bob:approver"})


def test_an_entry_may_name_its_token_by_digest_so_the_secret_holds_no_token() -> None:
    from approvals_ctl.__main__ import main

    token, key = new_token_entry()
    table = TokenTable.parse({key: "ada:admin"})
    principal = table.lookup(token)
    assert principal is not None and principal.id == "ada"
    assert table.lookup(key) is None  # the entry itself is not a token
    assert (
        main(["tokens", "new", "--principal", "val", "--roles", "approver", "--level", "vp"]) == 0
    )


@pytest.mark.parametrize("key", ["sha256:abc", "sha256:" + "g" * 64, "sha256:"])
def test_a_malformed_digest_entry_is_refused(key: str) -> None:
    assert "needs 64 hex digits" in refusal({key: "ada:admin"})
