"""What the benches share: the checkout they measure from, where they write, and how they fail."""

from __future__ import annotations

from pathlib import Path


class BenchError(RuntimeError):
    """The benchmark itself broke (no server, a failing call, no samples): not a missed target."""


def repo_root() -> Path:
    """The checkout this package runs from: the benches read its functions/ and inventories/."""
    return Path(__file__).resolve().parents[3]


def out_root() -> Path:
    """Where a bench writes when given no --out (git ignores it)."""
    return repo_root() / "tests" / "perf" / "out"
