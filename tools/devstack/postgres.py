"""PostgreSQL for the workflow (actor) state store: found or installed from Debian's packages,
a throwaway cluster initialised per stack, listening on loopback only.

PostgreSQL refuses to run as root. As root (CI, containers) the cluster is therefore owned by
the `postgres` user that Debian's package creates, in a directory of its own under /tmp (a
run directory is private to root), and the server is started through `setpriv` as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devstack import debian
from devstack.errors import DevstackError

LOOPBACK = "127.0.0.1"
USER = "dapr"  # the database role the sidecars connect as
DATABASE = "postgres"


class PostgresUnavailable(DevstackError):
    """No PostgreSQL server binaries, and no way to install them."""


def find_bin_dir() -> Path | None:
    """The directory holding initdb and postgres: Debian keeps them per major version."""
    for initdb in [
        shutil.which("initdb"),
        *sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
    ]:
        if initdb and (Path(initdb).resolve().parent / "postgres").is_file():
            return Path(initdb).resolve().parent
    return None


def ensure_postgres() -> Path:
    """The server's bin directory, installing Debian's package when we are root."""
    return debian.install(
        "postgresql",
        find_bin_dir,
        PostgresUnavailable,
        "PostgreSQL",
        "install the PostgreSQL server (https://www.postgresql.org/download/) and retry",
    )


@dataclass
class Cluster:
    """One initialised cluster: how to start its server and how to reach it."""

    data: Path
    port: int
    password: str
    command: list[str]  # the server in the foreground, as the user who owns the data
    owned_dir: Path | None = None  # made for root's sake; removed with the stack

    def connection_string(self) -> str:
        return (
            f"host={LOOPBACK} port={self.port} user={USER} password={self.password} "
            f"dbname={DATABASE} sslmode=disable connect_timeout=5"
        )

    def remove(self) -> None:
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)


def init_cluster(bin_dir: Path, run_dir: Path, port: int, password: str) -> Cluster:
    """initdb a new cluster with a password-protected role `dapr`, loopback TCP only."""
    as_user: list[str] = []
    owned_dir = None
    if os.geteuid() == 0:
        owner = _unprivileged_owner()
        owned_dir = Path(tempfile.mkdtemp(prefix="devstack-postgres-"))
        data = owned_dir / "data"
        os.chown(owned_dir, owner.pw_uid, owner.pw_gid)
        as_user = [
            shutil.which("setpriv") or "setpriv",
            f"--reuid={owner.pw_uid}",
            f"--regid={owner.pw_gid}",
            "--clear-groups",
        ]
    else:
        data = run_dir / "postgres"
    secret_dir = owned_dir or run_dir
    pwfile = secret_dir / "pgpass.tmp"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if owned_dir is not None:
        os.chown(pwfile, *_ids())
    try:
        out = subprocess.run(
            [
                *as_user,
                str(bin_dir / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                USER,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if out.returncode != 0:
        raise PostgresUnavailable(f"initdb failed: {(out.stderr or out.stdout).strip()[-600:]}")
    command = [
        *as_user,
        str(bin_dir / "postgres"),
        "-D",
        str(data),
        "-c",
        f"listen_addresses={LOOPBACK}",
        "-c",
        f"port={port}",
        "-c",
        f"unix_socket_directories={data}",  # not /var/run/postgresql: that is the system's
        "-c",
        "max_connections=200",  # each sidecar keeps a pool
    ]
    return Cluster(data, port, password, command, owned_dir)


def accepting(port: int) -> bool:
    """True when the server accepts a TCP connection on loopback (it may still be starting)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True
    except OSError:
        return False


def ready(bin_dir: Path, port: int) -> bool:
    """pg_isready: the server accepts sessions, not only connections."""
    tool = bin_dir / "pg_isready"
    if not tool.is_file():
        return accepting(port)
    out = subprocess.run(
        [str(tool), "-h", LOOPBACK, "-p", str(port), "-q"], capture_output=True, check=False
    )
    return out.returncode == 0


def _unprivileged_owner() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable("running as root, and there is no postgres or nobody user to run as")


def _ids() -> tuple[int, int]:
    owner = _unprivileged_owner()
    return owner.pw_uid, owner.pw_gid
