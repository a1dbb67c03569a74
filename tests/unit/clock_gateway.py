"""A gateway's ledger as a process of its own, for running under a moved clock.

`python -m tests.unit.clock_gateway DATABASE_URL PAYER KEY LEASE_S WINDOW_S`: opens the
shared database as a gateway does, claims one idempotency key, and prints what it decided
and the offset it measured to the site's clock, as JSON. Production code throughout.
"""

from __future__ import annotations

import json
import sys

from edgefaas.gateway.ledger import SqlLedger
from edgefaas.gateway.storage import open_migrated


def main(url: str, payer: str, key: str, lease_s: str, window_s: str) -> None:
    ledger = SqlLedger(open_migrated(url))
    try:
        claim = ledger.claim(payer, key, float(lease_s), float(window_s))
        print(
            json.dumps(
                {
                    "outcome": claim.outcome,
                    "call_id": claim.call_id,
                    "retry_after": claim.retry_after,
                    "offset_s": ledger.site_clock.offset_s,
                }
            ),
            flush=True,
        )
    finally:
        ledger.close()


if __name__ == "__main__":
    main(*sys.argv[1:6])
