"""Talking to the stack's mTLS endpoints from a test: a certificate from its sentry, and a
tunnel to a TLS server whose certificate names a SPIFFE id rather than a host.

gRPC's Python client checks the server's host name, and Dapr's certificates carry none (only
`spiffe://...` URIs), so a test reaches an mTLS port through `tunnel`: a plaintext port on
loopback whose connections go on over TLS, the chain checked against the stack's trust anchors
and the client certificate presented. Sentry's messages are encoded by hand from
dapr/proto/sentry/v1/sentry.proto (the SDK does not ship that proto).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from devstack.stack import Stack

JWKS_VALIDATOR = 3  # SignCertificateRequest.TokenValidator.JWKS


def varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def fields(message: bytes) -> dict[int, list[bytes | int]]:
    """A protobuf message's fields by number (varints and length-delimited ones)."""
    found: dict[int, list[bytes | int]] = {}
    i = 0

    def read_varint() -> int:
        nonlocal i
        value = shift = 0
        while True:
            byte = message[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while i < len(message):
        key = read_varint()
        if key & 7 == 0:
            found.setdefault(key >> 3, []).append(read_varint())
        elif key & 7 == 2:
            size = read_varint()
            found.setdefault(key >> 3, []).append(message[i : i + size])
            i += size
        else:
            raise ValueError(f"wire type {key & 7} not expected here")
    return found


@contextlib.contextmanager
def tunnel(
    port: int, trust_anchors: Path, cert: Path | None = None, key: Path | None = None
) -> Iterator[int]:
    """Yield a loopback port whose connections continue over TLS to `port`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # SPIFFE ids, no host names; the chain is still verified
    context.load_verify_locations(trust_anchors)
    context.set_alpn_protocols(["h2"])
    if cert and key:
        context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                plain, _ = listener.accept()
                try:
                    secure = context.wrap_socket(socket.create_connection(("127.0.0.1", port)))
                except (OSError, ssl.SSLError):
                    plain.close()  # the caller sees the connection fail, as it would
                    continue
                for a, b in ((plain, secure), (secure, plain)):
                    threading.Thread(target=pump, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def certificate_from_sentry(stack: Stack, app_id: str, token: str, out: Path) -> tuple[Path, Path]:
    """Ask the stack's sentry for `app_id`'s certificate, showing `token` ("" for none);
    return (certificate chain, key) files. Raises grpc.RpcError when sentry refuses."""
    assert stack.identity is not None
    key = ed25519.Ed25519PrivateKey.generate()
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, None)
    request = (
        field(1, app_id.encode())
        + field(2, token.encode())
        + field(4, b"default")
        + field(5, csr.public_bytes(serialization.Encoding.PEM))
        + varint(6 << 3)
        + varint(JWKS_VALIDATOR)
    )
    with (
        tunnel(stack.sentry_port, stack.identity.trust_anchors_file) as port,
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        sign = channel.unary_unary(
            "/dapr.proto.sentry.v1.CA/SignCertificate",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        answer = fields(sign(request, timeout=10))
    out.mkdir(parents=True, exist_ok=True)
    chain, key_file = out / f"{app_id}.crt", out / f"{app_id}.key"
    chain.write_bytes(bytes(answer[1][0]))  # type: ignore[arg-type]
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return chain, key_file
