"""Find (or install from Debian's packages) redis-server."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from devstack.errors import DevstackError
from devstack.log import say


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
    found = find_redis_server()
    if found:
        return found
    if not shutil.which("apt-get"):
        raise RedisUnavailable(
            "redis-server is not installed and apt-get is not available: install Redis "
            "(https://redis.io/docs/latest/operate/oss_and_stack/install/) and retry"
        )
    if os.geteuid() != 0:
        raise RedisUnavailable(
            "redis-server is not installed: run `sudo apt-get install -y redis-server` and retry"
        )
    say("redis: installing Debian's redis-server package (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "redis-server"]):
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RedisUnavailable(f"`{' '.join(cmd)}` failed: {out.stderr.strip()[-400:]}")
    found = find_redis_server()
    if not found:
        raise RedisUnavailable("apt-get installed redis-server but the binary is not on PATH")
    say(f"redis: installed {found}")
    return found
