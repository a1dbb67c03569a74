"""The one percentile definition (edgefaas.perf.stats)."""

from __future__ import annotations

import math
import random

import pytest

from edgefaas.perf.stats import percentile

pytestmark = pytest.mark.unit


def test_percentile_nearest_rank():
    ordered = [float(v) for v in range(1, 101)]
    assert percentile(ordered, 50) == 50.0
    assert percentile(ordered, 99) == 99.0
    assert percentile(ordered, 100) == 100.0
    assert percentile([3.0], 50) == 3.0
    assert math.isnan(percentile([], 50))


def test_a_p95_of_20_samples_is_the_19th_smallest_whatever_the_order():
    samples = [float(v) for v in range(1, 21)]
    random.Random(7).shuffle(samples)
    assert percentile(samples, 95) == 19.0
    assert percentile(samples, 0) == 1.0


def test_the_parsec_stress_figures_use_it():
    from edgefaas.parsec.stress import StressResult

    result = StressResult(clients=1, latencies_ms=[float(v) for v in range(20, 0, -1)])
    assert result.percentile(95) == 19.0 and result.percentile(50) == 10.0
    assert StressResult(clients=1).percentile(99) == 0.0
