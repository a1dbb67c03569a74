"""Gateways sharing PostgreSQL decide by the site's clock (the database server's), so one
whose own clock moved decides as the others do; with SQLite a gateway's clock is the site's.

The moved gateway is a real process under libfaketime, against the real PostgreSQL the
storage tests start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgefaas.gateway.database import SqliteDatabase
from edgefaas.gateway.ledger import SqlLedger
from edgefaas.gateway.site_clock import SiteClock
from edgefaas.gateway.storage import open_migrated

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
needs_faketime = pytest.mark.skipif(
    not shutil.which("faketime"), reason="libfaketime is not installed (apt-get install faketime)"
)


def moved_gateway_claims(offset: str, url: str, key: str, lease_s: float, window_s: float) -> dict:
    env = {**os.environ, "FAKETIME_DONT_FAKE_MONOTONIC": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = ["faketime", "-f", offset, sys.executable, "-m", "tests.unit.clock_gateway"]
    done = subprocess.run(
        [*command, url, "lic_a", key, str(lease_s), str(window_s)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_faketime
def test_a_gateway_two_hours_ahead_does_not_take_over_a_call_still_running_elsewhere(postgres_server):
    url = postgres_server.fresh_database()
    here = SqlLedger(open_migrated(url))
    try:
        running = here.claim("lic_a", "k-ahead", lease_s=30.0, window_s=600.0)
        assert running.outcome == "run"
        # By its own clock the lease ended two hours ago; by the site's it has 30 s left.
        moved = moved_gateway_claims("+2h", url, "k-ahead", 30.0, 600.0)
        assert moved["outcome"] == "wait", moved
        assert 0 < moved["retry_after"] <= 30.0
        assert abs(moved["offset_s"] + 7200.0) < 5.0
    finally:
        here.close()


@needs_faketime
def test_a_gateway_two_hours_behind_takes_over_a_call_whose_gateway_died(postgres_server):
    url = postgres_server.fresh_database()
    here = SqlLedger(open_migrated(url))
    try:
        dead = here.claim("lic_a", "k-behind", lease_s=1.0, window_s=600.0)
        assert dead.outcome == "run"  # and its gateway dies: the lease is never renewed
        time.sleep(1.5)
        # By its own clock the lease has two hours left; by the site's it has ended.
        moved = moved_gateway_claims("-2h", url, "k-behind", 30.0, 600.0)
        assert moved["outcome"] == "run", moved
        assert moved["call_id"] == dead.call_id  # the same call: billed once if the first run was
        assert abs(moved["offset_s"] - 7200.0) < 5.0
    finally:
        here.close()


def test_the_site_clock_costs_no_round_trip_per_call(postgres_server):
    db = open_migrated(postgres_server.fresh_database())
    try:
        clock = SiteClock(db)
        assert clock.measured_at is not None
        measured = clock.measured_at
        for _ in range(1000):
            clock.now()
        assert clock.measured_at == measured  # not stale yet: nothing was measured again
        assert abs(clock.now() - time.time()) < 5.0  # same machine, same clock
    finally:
        db.close()


def test_with_sqlite_the_gateways_own_clock_is_the_sites(tmp_path):
    db = SqliteDatabase(tmp_path / "gateway.db")
    try:
        clock = SiteClock(db, wall=lambda: 1234.5)
        assert clock.now() == 1234.5
        assert clock.measured_at is None  # nothing to compare against, nothing measured
    finally:
        db.close()
