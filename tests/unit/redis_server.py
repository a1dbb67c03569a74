"""A throwaway redis-server for the unit tests, as SONiC's database: a unix socket, nothing saved."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def redis_server(directory: Path) -> Iterator[Path]:
    """Start redis-server with its socket in `directory` (no TCP port); yield the socket's path."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: apt-get install redis-server (scripts/setup installs it)"
    socket = directory / "redis.sock"
    proc = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(socket), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=directory,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            assert proc.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not open its socket within 10 s"
            time.sleep(0.02)
        yield socket
    finally:
        proc.terminate()
        proc.wait(timeout=10)
