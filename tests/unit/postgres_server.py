"""A real PostgreSQL server for unit tests: Debian's initdb and pg_ctl in a temp dir, on a free
loopback port, once per session. Each test gets a database of its own (``fresh_database``).

As root the server runs as the ``postgres`` user (or ``nobody``): PostgreSQL refuses root.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _binary(name: str) -> str | None:
    for directory in BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    return shutil.which(name)


class PostgresServer:
    def __init__(self, base: Path) -> None:
        initdb, self.pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if not initdb or not self.pg_ctl:
            pytest.fail("PostgreSQL is missing: apt-get install postgresql (scripts/setup installs it)")
        self.base = base
        self.data = base / "data"
        self.port = free_port()
        self.user = "postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = server_owner()
            self._as = ["runuser", "-u", owner, "--"]
            shutil.chown(base, owner)
            base.chmod(0o700)
        else:
            self.user = getpass.getuser()
        self._run(
            initdb, "-D", str(self.data), "-U", self.user, "--auth=trust", "--encoding=UTF8", "--no-sync"
        )
        self.start()

    def _run(self, *command: str) -> None:
        subprocess.run(
            [*self._as, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120
        )

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.base}"
        options += " -c fsync=off -c max_connections=200"
        self._run(
            self.pg_ctl, "-D", str(self.data), "-l", str(self.base / "log"), "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def fresh_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def server_owner() -> str:
    """The account a root-run test server runs as: PostgreSQL refuses to run as root."""
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("neither a postgres nor a nobody account exists to run PostgreSQL as")


@pytest.fixture(scope="session")
def postgres_server():
    base = Path(tempfile.mkdtemp(prefix="edgefaas-pg-"))
    server = PostgresServer(base)
    yield server
    try:
        server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
