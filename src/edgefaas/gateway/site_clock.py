"""One clock for every gateway of a site: the shared PostgreSQL server's.

Gateways sharing a database decide together what time it is: whether an idempotency
lease has run out (another gateway's call may be taken over), whether a key's window has
ended (a retry is a new call, paid again), which quota period a call falls in. A gateway
on a switch whose clock moved would otherwise take over calls still running elsewhere,
or forget keys the others still honour. So those decisions use the database server's
clock, as this gateway's clock plus an offset measured against the server's now() and
refreshed in the background every REFRESH_S: a call costs no extra round trip.

With SQLite there is one gateway and nothing to compare its clock against: its own clock
is the site's (offset 0).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .database import Database, StorageUnavailable

log = logging.getLogger("edgefaas.gateway.site_clock")

REFRESH_S = 60.0  # clocks drift by far less than a second a minute
RETRY_S = 5.0  # after a first measurement failed (the database away at start)
# Past this, the gateway's own clock is worth a warning (its logs and its own timestamps
# mislead); the site's decisions stay correct whatever the offset.
TOLERANCE_S = 30.0


class SiteClock:
    def __init__(self, db: Database, wall: Callable[[], float] = time.time) -> None:
        self.db, self.wall = db, wall
        self.offset_s = 0.0  # the database server's clock minus this gateway's
        self.error_s = 0.0  # half the round trip of the last measurement
        self.measured_at: float | None = None  # monotonic; None: never measured (SQLite, or away)
        self._refreshing = threading.Lock()
        self._reported = False
        if db.dialect == "postgresql":
            self.refresh()

    def now(self) -> float:
        """The site's time, seconds since the epoch."""
        if self.db.dialect == "postgresql" and self._stale() and self._refreshing.acquire(blocking=False):
            threading.Thread(target=self._refresh_held, name="site-clock", daemon=True).start()
        return self.wall() + self.offset_s

    def _stale(self) -> bool:
        return self.measured_at is None or time.monotonic() - self.measured_at >= REFRESH_S

    def _refresh_held(self) -> None:
        try:
            self.refresh()
        finally:
            self._refreshing.release()

    def refresh(self) -> None:
        """Measure the offset against the database server's clock (kept as it was if it is away)."""
        try:
            with self.db.transaction(write=False) as tx:
                sent = self.wall()
                (server,) = tx.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())").fetchone()
                received = self.wall()
        except StorageUnavailable as exc:
            log.info("site clock not measured (kept offset %.3f s): %s", self.offset_s, exc)
            if self.measured_at is None:
                self.measured_at = time.monotonic() - REFRESH_S + RETRY_S  # tried again in RETRY_S
            return
        self.offset_s = float(server) - (sent + received) / 2
        self.error_s = (received - sent) / 2
        self.measured_at = time.monotonic()
        off = abs(self.offset_s) - self.error_s > TOLERANCE_S
        if off and not self._reported:
            side = "behind" if self.offset_s > 0 else "ahead of"
            log.warning(
                "this gateway's clock is %.1f s %s the database server's (tolerance %g s); "
                "billing and idempotency decisions use the database's",
                abs(self.offset_s), side, TOLERANCE_S,
            )  # fmt: skip
        elif not off and self._reported:
            log.info("this gateway's clock is back within %g s of the database server's", TOLERANCE_S)
        self._reported = off
