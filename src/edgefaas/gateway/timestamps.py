"""Times as the API writes them: ISO 8601 in UTC, to the second."""

from __future__ import annotations

import time


def iso_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
