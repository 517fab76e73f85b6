"""Find (or install from Debian's packages) redis-server."""

from __future__ import annotations

import shutil
from pathlib import Path

from devstack import debian
from devstack.errors import DevstackError


class RedisUnavailable(DevstackError):
    """No redis-server, and no way to install one."""


def find_redis_server() -> Path | None:
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def ensure_redis_server() -> Path:
    """Return the redis-server binary, installing Debian's package when we are root."""
    return debian.install(
        "redis-server",
        find_redis_server,
        RedisUnavailable,
        "redis-server",
        "install Redis (https://redis.io/docs/latest/operate/oss_and_stack/install/) and retry",
    )
