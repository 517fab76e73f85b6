"""devstack: the stack's own CA and tokens for mTLS, replicas and their names."""

import base64
import json
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from devstack.apps import BadReplicas, parse_replicas, replica_names
from devstack.control import format_ps
from devstack.errors import DevstackError
from devstack.identity import Identity, spiffe_id
from devstack.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
APPS = ["orders", "approvals", "notifier"]


def test_the_stacks_ca_is_shaped_as_sentry_makes_its_own(tmp_path: Path) -> None:
    identity = Identity(tmp_path / "mtls").make()
    files = sorted(p.name for p in identity.credentials.iterdir())
    assert files == ["ca.crt", "issuer.crt", "issuer.key"]  # the root's key is not kept
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in identity.credentials.iterdir())
    root = x509.load_pem_x509_certificate(identity.trust_anchors.encode())
    issuer = x509.load_pem_x509_certificate((identity.credentials / "issuer.crt").read_bytes())
    issuer.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    for cert in (root, issuer):
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert issuer.subject.rfc4514_string() == f"O={spiffe_id('dapr-sentry')}"


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_only_a_token_signed_by_the_stacks_key_names_an_app_to_sentry(tmp_path: Path) -> None:
    identity = Identity(tmp_path / "mtls").make()
    config = yaml.safe_load(identity.sentry_config.read_text())
    (validator,) = config["spec"]["mtls"]["tokenValidators"]
    assert validator["name"] == "jwks"  # not sentry's self-hosted default, "insecure"
    (jwk,) = json.loads(validator["options"]["source"])["keys"]
    key = ed25519.Ed25519PublicKey.from_public_bytes(_b64(jwk["x"]))
    token = identity.token_file("orders").read_text()
    header, claims, signature = token.split(".")
    key.verify(_b64(signature), f"{header}.{claims}".encode())
    assert json.loads(_b64(claims)) | {"iat": 0, "jti": ""} == {
        "sub": "spiffe://public/ns/default/orders",
        "aud": "spiffe://localhost/ns/default/dapr-sentry",
        "iat": 0,
        "jti": "",
    }
    assert json.loads(_b64(header))["kid"] == jwk["kid"]
    assert identity.env("dapr-placement")["DAPR_SENTRY_TOKEN_FILE"].endswith("dapr-placement.jwt")
    assert spiffe_id("dapr-placement") == "spiffe://localhost/ns/default/dapr-placement"
    again = Identity(tmp_path / "mtls").make()  # a new stack in the same run dir
    assert again.token_file("orders").read_text() != token


def test_replicas_are_named_per_app() -> None:
    assert parse_replicas("orders=2,approvals=3", APPS) == {"orders": 2, "approvals": 3}
    assert parse_replicas("2", APPS) == dict.fromkeys(APPS, 2)
    assert parse_replicas("", APPS) == {}
    assert replica_names("orders", 1) == ["orders"]
    assert replica_names("orders", 2) == ["orders-1", "orders-2"]
    with pytest.raises(BadReplicas, match="no app 'shop'; the apps are orders, approvals"):
        parse_replicas("shop=2", APPS)
    with pytest.raises(BadReplicas, match="'0' is no number of replicas"):
        parse_replicas("orders=0", APPS)


def test_replicas_without_mtls_are_refused_before_anything_starts(tmp_path: Path) -> None:
    stack = Stack(
        run_file=ROOT / "dapr.yaml", run_dir=tmp_path / "run", replicas={"orders": 2}, mtls=False
    )
    with pytest.raises(DevstackError, match="replicas need mTLS"):
        stack.start()
    assert not (tmp_path / "run").exists()


def test_ps_makes_room_for_long_replica_names() -> None:
    row = {
        "name": "approvals-2-daprd",
        "pid": 42,
        "state": "running",
        "restarts": 0,
        "ready": True,
        "up_s": 5.0,
        "last_exit": "",
        "last_exit_ago_s": None,
    }
    header, line = format_ps([row]).splitlines()
    assert line.index("42") + 2 == header.index("PID") + 3
