"""A few lines of RESP (Redis's protocol) over a socket: enough for a test to ask the stack's
redis-server what it holds (XPENDING, XINFO), with no client package."""

from __future__ import annotations

import socket
from typing import Any


def command(port: int, password: str, *args: str) -> Any:
    """Run one command after AUTH; the reply decoded: str, int, None, list or RedisError."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        reader = s.makefile("rb")
        for cmd in (("AUTH", password), args):
            s.sendall(_encode(cmd))
            reply = _read(reader)
        return reply


class RedisError(Exception):
    pass


def _encode(args: tuple[str, ...]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _read(reader: Any) -> Any:
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RedisError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else reader.read(n + 2)[:-2].decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read(reader) for _ in range(n)]
    raise RedisError(f"unexpected reply {line!r}")
