"""Plans (what a call costs, and how many a license may make) and the licenses that hold one.

Amounts are integer millionths of the currency unit (micros) everywhere but in JSON, so
sums over many calls never drift the way floats would.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ..ledger import MICROS
from ..timestamps import iso_time


def _micros(amount: float | int | str) -> int:
    """Currency units to integer millionths, rounded half up."""
    return int((Decimal(str(amount)) * MICROS).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def money(micros: int) -> float:
    """Micros to currency units, as the API's JSON writes amounts."""
    return round(micros / MICROS, 6)


@dataclass(frozen=True)
class Plan:
    """What a license pays: a price per call, a price per second of function time, and a quota."""

    name: str
    price_per_call_micros: int = 0
    price_per_second_micros: int = 0
    quota_calls: int | None = None  # None: no quota
    quota_period_s: int = 86_400
    description: str = ""

    def price(self, duration_us: int) -> int:
        """The amount, in micros, of one call that ran ``duration_us`` microseconds."""
        per_time = (self.price_per_second_micros * duration_us + MICROS // 2) // MICROS
        return self.price_per_call_micros + per_time

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "price_per_call": money(self.price_per_call_micros),
            "price_per_second": money(self.price_per_second_micros),
            "quota": None
            if self.quota_calls is None
            else {"calls": self.quota_calls, "period_s": self.quota_period_s},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        quota = data.get("quota")
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            price_per_call_micros=_micros(data.get("price_per_call", 0)),
            price_per_second_micros=_micros(data.get("price_per_second", 0)),
            quota_calls=None if quota is None else int(quota["calls"]),
            quota_period_s=86_400 if quota is None else int(quota["period_s"]),
        )


# Seeded into a new store; operators add their own with POST /system/plans.
DEFAULT_PLANS = (
    Plan("free", quota_calls=1000, quota_period_s=86_400, description="1000 calls a day, no charge"),
    Plan(
        "standard",
        price_per_call_micros=100,  # 0.0001 per call
        price_per_second_micros=20,  # 0.00002 per second of function time
        description="pay per call and per second of function time, no quota",
    ),
)


@dataclass(frozen=True)
class License:
    id: str
    name: str
    plan: str
    created_at: float
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "plan": self.plan,
            "created_at": iso_time(self.created_at),
            "revoked": self.revoked,
        }
