"""Scale figures: deploy time and no-change re-run time against the number of devices.

The file (`tests/perf/scale-figures.json`, written by `python -m tests.perf.lab_bench --json`
and `python -m tests.perf.k3s_bench --json`) holds named series of points:

    {"series": {"K3S deploy": {"unit": "nodes", "recorded": "...",
                               "points": [{"devices": 3, "deploy_s": 70.0, "rerun_s": 8.6}]}}}

A new measurement replaces the point of the same series and size and keeps the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

K3S_SERIES = "K3S deploy (deploys/k3s.py)"
PLATFORM_SERIES = "platform deploy (deploys/platform.py)"


@dataclass(frozen=True)
class ScalePoint:
    devices: int
    deploy_s: float
    rerun_s: float
    recorded: str = ""


@dataclass(frozen=True)
class ScaleSeries:
    name: str
    unit: str
    points: tuple[ScalePoint, ...]


def load_scale(path: Path) -> list[ScaleSeries]:
    """The series of a scale-figures file, each one's points ordered by size.

    ValueError when the file is not of that shape.
    """
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("series"), dict):
        raise ValueError(f"{path}: no 'series' object")
    series = []
    for name, body in data["series"].items():
        try:
            points = tuple(
                sorted(
                    (
                        ScalePoint(
                            int(p["devices"]),
                            float(p["deploy_s"]),
                            float(p["rerun_s"]),
                            str(p.get("recorded") or body.get("recorded") or ""),
                        )
                        for p in body["points"]
                    ),
                    key=lambda point: point.devices,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: series {name!r}: {exc!r}") from None
        series.append(ScaleSeries(name, str(body.get("unit", "devices")), points))
    return series


def record_point(
    path: Path,
    series: str,
    devices: int,
    deploy_s: float,
    rerun_s: float,
    recorded: str,
    unit: str = "devices",
) -> None:
    """Add (or replace) one point of `series` in the file at `path`, creating it if needed."""
    data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    body = data.setdefault("series", {}).setdefault(series, {"unit": unit, "points": []})
    body["points"] = [p for p in body["points"] if int(p["devices"]) != devices]
    body["points"].append(
        {
            "devices": devices,
            "deploy_s": round(deploy_s, 1),
            "rerun_s": round(rerun_s, 1),
            "recorded": recorded,
        }
    )
    body["points"].sort(key=lambda p: int(p["devices"]))
    path.write_text(json.dumps(data, indent=2) + "\n")
