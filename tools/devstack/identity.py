"""mTLS for the local stack: a certificate authority and identity tokens made per stack.

Dapr's sentry signs every control plane process's and sidecar's certificate, whose SPIFFE id
names its app (`spiffe://public/ns/default/orders`); with it the sidecars authenticate each
other, placement and scheduler, and the workflow access policy authorises the caller by that id.

Everything here is new on every start and lives in the run directory (mode 700):

- the CA: a root and an issuer, both Ed25519, shaped as sentry makes its own in self-hosted mode
  (`pkg/sentry/server/ca/bundle`). The root's key is never written: nothing signs with it after
  the issuer. Sentry would generate such a CA itself into an empty `--issuer-credentials` dir,
  but it starts watching that dir at the same moment and may restart its server on its own
  writes; and devstack needs the trust anchors for every other process first.
- the tokens: sentry's self-hosted default validator (`insecure`) signs a certificate for any
  app id anyone asks for, so any local process could become `orders`. Instead sentry runs the
  `jwks` validator: it signs only for a JWT whose subject is the requested SPIFFE id, signed by
  a key in this stack's JWKS. Each process gets its token in a file (mode 600), through
  `DAPR_SENTRY_TOKEN_FILE`, as Kubernetes hands a pod its projected token.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from devstack.keys import write_private

# The control plane's trust domain (Dapr's default, as daprd's --control-plane-trust-domain
# and placement's, scheduler's and sentry's --trust-domain have it) and the one sentry puts a
# sidecar in when the sidecar names none; the namespace every process requests in.
CONTROL_PLANE_TRUST_DOMAIN = "localhost"
APP_TRUST_DOMAIN = "public"
NAMESPACE = "default"
CA_TTL = datetime.timedelta(days=365)
KEY_ID = "devstack"


def spiffe_id(name: str) -> str:
    """The SPIFFE id sentry gives `name`: an app id, or a control plane service's
    (`dapr-placement`, `dapr-scheduler`, `dapr-sentry`)."""
    domain = CONTROL_PLANE_TRUST_DOMAIN if name.startswith("dapr-") else APP_TRUST_DOMAIN
    return f"spiffe://{domain}/ns/{NAMESPACE}/{name}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _ca_cert(
    subject: str,
    key: ed25519.Ed25519PrivateKey,
    issuer: tuple[x509.Name, ed25519.Ed25519PrivateKey] | None,
    usage_crl: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject)])
    issuer_name, signer = issuer or (name, key)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=15))  # sentry's clock skew
        .not_valid_after(now + CA_TTL)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=usage_crl,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(signer, None)
    )


@dataclass
class Identity:
    """The stack's CA and token key; `make()` writes them under `<run dir>/mtls`."""

    directory: Path
    _token_key: ed25519.Ed25519PrivateKey = field(
        default_factory=ed25519.Ed25519PrivateKey.generate, repr=False
    )

    @property
    def credentials(self) -> Path:
        """sentry's --issuer-credentials: ca.crt, issuer.crt, issuer.key."""
        return self.directory / "sentry"

    @property
    def trust_anchors_file(self) -> Path:
        return self.credentials / "ca.crt"

    @property
    def trust_anchors(self) -> str:
        """The root certificate, PEM: what every process trusts (daprd: DAPR_TRUST_ANCHORS)."""
        return self.trust_anchors_file.read_text()

    @property
    def sentry_config(self) -> Path:
        return self.directory / "sentry.yaml"

    def make(self) -> Identity:
        """A new CA, JWKS and sentry configuration (replacing any of an earlier stack)."""
        root_key = ed25519.Ed25519PrivateKey.generate()
        root = _ca_cert(CONTROL_PLANE_TRUST_DOMAIN, root_key, None, usage_crl=False)
        issuer_key = ed25519.Ed25519PrivateKey.generate()
        issuer = _ca_cert(
            spiffe_id("dapr-sentry"), issuer_key, (root.subject, root_key), usage_crl=True
        )
        self.credentials.mkdir(parents=True, exist_ok=True)
        self.credentials.chmod(0o700)
        write_private(self.credentials / "ca.crt", _pem(root).decode())
        write_private(self.credentials / "issuer.crt", _pem(issuer).decode())
        key_pem = issuer_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(self.credentials / "issuer.key", key_pem.decode())
        public = self._token_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(public), "kid": KEY_ID, "alg": "EdDSA"}
        # The JWKS itself as the validator's source (it also takes a file or a URL).
        validator = {"name": "jwks", "options": {"source": json.dumps({"keys": [jwk]})}}
        config = {
            "apiVersion": "dapr.io/v1alpha1",
            "kind": "Configuration",
            "metadata": {"name": "devstack-sentry"},
            "spec": {"mtls": {"tokenValidators": [validator]}},
        }
        write_private(self.sentry_config, yaml.safe_dump(config, sort_keys=False))
        for stale in (self.directory / "tokens").glob("*.jwt"):  # an earlier stack's
            stale.unlink()
        return self

    def token(self, name: str) -> str:
        """A JWT that lets its holder obtain `name`'s certificate from this stack's sentry."""
        header = {"alg": "EdDSA", "typ": "JWT", "kid": KEY_ID}
        now = int(datetime.datetime.now(datetime.UTC).timestamp())
        claims = {
            "sub": spiffe_id(name),
            "aud": spiffe_id("dapr-sentry"),
            "iat": now,
            "jti": secrets.token_hex(8),
        }
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self._token_key.sign(signing_input.encode())
        return f"{signing_input}.{_b64url(signature)}"

    def token_file(self, name: str) -> Path:
        """`name`'s token in a private file (made once), for DAPR_SENTRY_TOKEN_FILE."""
        path = self.directory / "tokens" / f"{name}.jwt"
        if not path.is_file():
            write_private(path, self.token(name))
        return path

    def env(self, name: str) -> dict[str, str]:
        """What a Dapr process of identity `name` needs in its environment."""
        return {"DAPR_SENTRY_TOKEN_FILE": str(self.token_file(name)), "NAMESPACE": NAMESPACE}
