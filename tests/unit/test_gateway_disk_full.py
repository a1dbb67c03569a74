"""The gateway's database on a disk that fills up under a steady stream of billed calls.

A small tmpfs holds the database (SQLite: the gateway's data directory; PostgreSQL: the
tablespace of the gateway's database, its WAL staying on the server's own disk), and a
ballast file fills it to ENOSPC while callers keep calling. What must hold: no call is
answered 2xx without exactly one ledger row, the others are answered 503 naming the full
disk (never 500, never hung), admin writes are refused the same way while reads still work,
and once the ballast is removed calls succeed again without a restart; the ledger then
passes ``edgefaas gateway check-ledger``. The figures are printed (run with ``-s``).

Mounting needs root (CI runs the unit tests as root); elsewhere these tests skip.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgefaas.gateway.cli import gateway as gateway_command
from edgefaas.gateway.database import open_database

from .postgres_server import server_owner
from .test_gateway_fakes import ADMIN, CODE, Harness

pytestmark = pytest.mark.unit

SHARED_KEY = bytes(range(32))
PAYLOAD = {"pad": "x" * 2048}  # a stored answer this large fills the disk within seconds
CALLERS = 4
PHASE_LIMIT_S = 60.0  # a phase that does not end within this failed (the stream is fast)


def _mount_tmpfs(where: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("filling a disk needs a tmpfs of its own, and mounting one needs root")
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")


def _unmount(where: Path) -> None:
    if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "--lazy", str(where)], check=True)


@dataclass
class Disk:
    """Where the database lives (a tmpfs of its own) and the URL the gateway opens it by."""

    mount: Path
    storage_url: str
    gateway_dir: Path

    def fill(self) -> int:
        """Write a ballast file until the disk has no space left; its size."""
        written = 0
        with open(self.mount / "ballast", "wb", buffering=0) as ballast:
            for chunk in (1 << 16, 1 << 12, 1 << 9):
                try:
                    while True:
                        written += ballast.write(b"\0" * chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        return written

    def free(self) -> None:
        (self.mount / "ballast").unlink()


@pytest.fixture
def sqlite_disk(tmp_path) -> Iterator[Disk]:
    mount = tmp_path / "disk"
    # Room for a minute of calls once the ballast is gone, so the stream cannot fill it again.
    _mount_tmpfs(mount, "32m")
    try:
        data_dir = mount / "gateway"
        yield Disk(mount, f"sqlite://{data_dir / 'gateway.db'}", data_dir)
    finally:
        _unmount(mount)


@pytest.fixture
def postgresql_disk(tmp_path, postgres_server) -> Iterator[Disk]:
    import psycopg

    # Outside the test's own temporary directory: PostgreSQL's user must reach the tablespace.
    mount = Path(tempfile.mkdtemp(prefix="edgefaas-disk-"))
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        _mount_tmpfs(mount, "48m")  # a new database is a copy of template1, about 8 MB
        try:
            space = mount / "tablespace"
            space.mkdir()
            owner = server_owner()
            shutil.chown(space, owner, owner)
            space.chmod(0o700)
            with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
                conn.execute(f"CREATE TABLESPACE {name} LOCATION '{space}'")
                conn.execute(f"CREATE DATABASE {name} TABLESPACE {name}")
            yield Disk(mount, postgres_server.url(name), tmp_path / "gateway")
        finally:
            with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                conn.execute(f"DROP TABLESPACE IF EXISTS {name}")
            _unmount(mount)
    finally:
        mount.rmdir()


@dataclass
class Answer:
    key: str | None  # the caller's idempotency key, None for a call without one
    call_id: str  # what X-Call-Id said: the ledger's call id for a call without a key
    status: int
    error: str
    phase: str
    at: float  # monotonic seconds when the answer came


@dataclass
class Stream:
    """Callers calling Echo without pause, half of them with idempotency keys."""

    harness: Harness
    token: str
    phase: str = "before"
    answers: list[Answer] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._caller, args=(n,), daemon=True) for n in range(CALLERS)]
        for thread in threads:
            thread.start()
        self._threads = threads
        return threads

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(PHASE_LIMIT_S)
            assert not thread.is_alive(), "a caller hung"

    def _caller(self, number: int) -> None:
        keyed = number % 2 == 1
        try:
            while not self._stop.is_set():
                key = f"k{number}-{uuid.uuid4().hex[:12]}" if keyed else None
                answer = self.call(key)
                with self._lock:
                    self.answers.append(answer)
        except BaseException as exc:  # a hung (timed out) or failed request: the test fails on it
            self.failures.append(exc)

    def call(self, key: str | None, phase: str | None = None) -> Answer:
        headers = {"X-Call-Id": key} if key else {}
        response = self.harness.call("Echo", self.token, json=PAYLOAD, headers=headers)
        error = response.json().get("error", "") if response.status_code != 200 else ""
        return Answer(
            key,
            response.headers["x-call-id"],
            response.status_code,
            error,
            phase or self.phase,
            time.monotonic(),
        )

    def count(self, phase: str, status: int) -> int:
        with self._lock:
            return sum(1 for a in self.answers if a.phase == phase and a.status == status)

    def wait_for(self, phase: str, status: int, how_many: int, why: str) -> None:
        deadline = time.monotonic() + PHASE_LIMIT_S
        while self.count(phase, status) < how_many:
            assert not self.failures, f"a caller failed: {self.failures[0]!r}"
            assert time.monotonic() < deadline, (
                f"{why}: {self.count(phase, status)} answers {status} in {phase}"
            )
            time.sleep(0.05)


def _ledger(url: str) -> tuple[set[str], dict[str, str]]:
    """The ledger's call ids, and the call id each idempotency key with a stored answer was billed as."""
    db = open_database(url)
    try:
        with db.transaction(write=False) as tx:
            rows = {row[0] for row in tx.execute("SELECT call_id FROM ledger").fetchall()}
            done = dict(tx.execute("SELECT key, call_id FROM idempotency WHERE state = 'done'").fetchall())
    finally:
        db.close()
    return rows, done


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_full_disk_refuses_billed_calls_with_503_loses_none_and_recovers_without_a_restart(
    request, kind, caplog
):
    disk: Disk = request.getfixturevalue(f"{kind}_disk")
    caplog.set_level(logging.WARNING, logger="edgefaas.gateway.database")
    harness = Harness(disk.gateway_dir, storage_url=disk.storage_url, license_key=SHARED_KEY)
    try:
        harness.deploy("Echo")
        license_id, token = harness.license()
        stream = Stream(harness, token)
        stream.start()
        try:
            stream.wait_for("before", 200, 20, "calls did not go through before the disk filled")
            stream.phase = "full"
            ballast = disk.fill()
            stream.wait_for("full", 503, 10, "the disk filled but no call was refused")

            # While full: admin writes are done while they fit in space already held (PostgreSQL's
            # half-empty pages), then refused naming the disk; reads keep working.
            for number in range(2000):
                admin = harness.post(
                    "/system/licenses", json={"name": f"late-{number}", "plan": "standard"}, auth=ADMIN
                )
                assert admin.status_code in (201, 503), admin.text
                if admin.status_code == 503:
                    break
            assert admin.status_code == 503, "every admin write found space on a full disk"
            assert "no space left" in admin.json()["error"] and admin.headers["retry-after"]
            assert harness.bill(license_id).status_code == 200
            metrics = harness.get("/metrics").text
            disk_full_errors = next(
                int(line.split()[-1])
                for line in metrics.splitlines()
                if line.startswith('edgefaas_storage_errors_total{reason="disk_full"}')
            )
            assert disk_full_errors > 0

            stream.phase = "freed"
            disk.free()
            freed_at = time.monotonic()
            stream.wait_for("freed", 200, 20, "calls did not succeed again after space was freed")
            deadline = time.monotonic() + PHASE_LIMIT_S
            while not any("space was freed" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "the end of the full disk was never logged"
                time.sleep(0.1)
        finally:
            stream.stop()
        assert not stream.failures, f"a caller failed: {stream.failures[0]!r}"

        answers = list(stream.answers)
        statuses = {a.status for a in answers}
        assert statuses <= {200, 503}, f"answers other than 200 and 503: {statuses}"
        refused = [a for a in answers if a.status == 503]
        assert all("no space left" in a.error for a in refused), {a.error for a in refused}
        assert all(a.status == 200 for a in answers if a.phase == "before")

        # Callers with keys retry what was refused, as the callers do: each runs once.
        retried = [stream.call(a.key, "retry") for a in refused if a.key]
        assert all(r.status == 200 for r in retried), [(r.status, r.error) for r in retried]

        billed, done = _ledger(disk.storage_url)
        unkeyed = [a for a in answers if a.key is None]
        lost = [a for a in unkeyed if a.status == 200 and a.call_id not in billed]
        unanswered_but_billed = [a for a in unkeyed if a.status != 200 and a.call_id in billed]
        keys = {a.key for a in answers if a.key}
        keys_unbilled = [k for k in keys if k not in done or done[k] not in billed]
        recovered = min(a.at for a in answers if a.phase == "freed" and a.status == 200) - freed_at
        expected_rows = sum(1 for a in unkeyed if a.status == 200) + len(keys)
        print(
            f"\n{kind} disk full ({ballast} bytes of ballast): calls {len(answers)},"
            f" failed (503) {len(refused)},"
            f" lost {len(lost) + len(keys_unbilled)},"
            f" billing errors {len(unanswered_but_billed) + abs(len(billed) - expected_rows)},"
            f" refused by disk_full {disk_full_errors}+, keyed calls retried {len(retried)},"
            f" recovered {recovered:.2f} s after the space was freed"
        )
        assert not lost, f"answered 200 without a ledger row: {lost[:3]}"
        assert not unanswered_but_billed, f"billed but answered 503: {unanswered_but_billed[:3]}"
        assert not keys_unbilled, f"keys never billed: {keys_unbilled[:3]}"
        assert len(billed) == expected_rows  # one row per answered call, one per key: none doubled

        # One warning when an episode starts and one when it ends, not one per refused call.
        started = [r for r in caplog.records if "no space left on the database's disk" in r.getMessage()]
        ended = [r for r in caplog.records if "space was freed" in r.getMessage()]
        assert started and len(started) == len(ended), [r.getMessage() for r in caplog.records]
        assert len(started) < len(refused) or len(refused) == 1
    finally:
        harness.close()

    checked = CliRunner().invoke(gateway_command, ["check-ledger", "--storage", disk.storage_url])
    assert checked.exit_code == 0, (checked.output, repr(checked.exception))
    assert "ledger ok" in checked.output


def test_a_deploy_onto_a_full_data_dir_is_refused_with_503_and_accepted_once_space_is_freed(sqlite_disk):
    from edgefaas.backends.local import LocalBackend

    harness = Harness(
        sqlite_disk.gateway_dir,
        backend=LocalBackend(sqlite_disk.gateway_dir, drain_delay=0),
        storage_url=sqlite_disk.storage_url,
        license_key=SHARED_KEY,
    )
    try:
        sqlite_disk.fill()
        refused = harness.post("/system/functions", json={"service": "Echo", "code": CODE}, auth=ADMIN)
        assert refused.status_code == 503, refused.text
        assert "no space left" in refused.json()["error"] and refused.headers["retry-after"]
        sqlite_disk.free()
        harness.deploy("Echo")
    finally:
        harness.close()


# -- the integrity check ---------------------------------------------------------------------


def _check(url: str):
    return CliRunner().invoke(gateway_command, ["check-ledger", "--storage", url])


def test_check_ledger_names_what_is_wrong_and_exits_non_zero(tmp_path):
    harness = Harness(tmp_path / "gateway", license_key=SHARED_KEY)
    try:
        harness.deploy("Echo")
        license_id, token = harness.license()
        for key in ("a", "b"):
            assert harness.call("Echo", token, json=PAYLOAD, headers={"X-Call-Id": key}).status_code == 200
    finally:
        harness.close()
    url = f"sqlite://{tmp_path / 'gateway' / 'gateway.db'}"
    healthy = _check(url)
    assert healthy.exit_code == 0, healthy.output
    assert "ledger ok: 2 calls billed to 1 payers" in healthy.output

    db = open_database(url)
    try:
        with db.transaction() as tx:
            tx.execute(
                "INSERT INTO ledger VALUES ('forged', 'lic_nobody', 'Echo', 1700000000.0, -5, 200, 10, '')"
            )
            tx.execute(
                "INSERT INTO ledger VALUES ('odd', ?, 'Echo', 1700000000.0, 5, 42, 10, '')", (license_id,)
            )
            tx.execute("UPDATE idempotency SET call_id = 'never-billed' WHERE key = 'a'")
    finally:
        db.close()
    broken = _check(url)
    assert broken.exit_code == 1, broken.output
    for problem in (
        "1 ledger rows with a negative duration or amount",
        "1 ledger rows billed to a license the gateway never issued",
        "1 ledger rows with no HTTP status",
        "1 stored answers (idempotency keys done) whose call has no ledger row",
    ):
        assert problem in broken.output, broken.output


def test_check_ledger_of_a_database_that_is_not_there_says_so(tmp_path):
    missing = _check(f"sqlite://{tmp_path / 'nothing.db'}")
    assert missing.exit_code != 0
    assert "no database at" in missing.output
