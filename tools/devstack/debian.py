"""Install a missing server from Debian's packages, when we are root; otherwise say how."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from devstack.errors import DevstackError
from devstack.log import say


def install(
    package: str,
    find: Callable[[], Path | None],
    missing: type[DevstackError],
    what: str,
    elsewhere: str,
) -> Path:
    """Return what `find` finds, installing `package` with apt-get first if it finds nothing.

    `what` names it in messages; `elsewhere` says how to install it without apt-get."""
    found = find()
    if found:
        return found
    if not shutil.which("apt-get"):
        raise missing(f"{what} is not installed and apt-get is not available: {elsewhere}")
    if os.geteuid() != 0:
        raise missing(f"{what} is not installed: run `sudo apt-get install -y {package}` and retry")
    say(f"{what}: installing Debian's {package} package (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", package]):
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise missing(f"`{' '.join(cmd)}` failed: {out.stderr.strip()[-400:]}")
    found = find()
    if not found:
        raise missing(f"apt-get installed {package} but {what} was not found")
    say(f"{what}: installed {found}")
    return found
