"""The one percentile definition every figure of this project uses."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`, in any order; NaN when empty.

    The smallest value with at least q% of the values at or below it: a p95 of 20 samples
    is the 19th smallest, a p100 the largest, and it is always a value that was measured.
    """
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
