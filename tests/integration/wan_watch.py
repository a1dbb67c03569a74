"""Watch one BGP path on the PE, on the PE itself: run by the `wan` lab device's own python3.

    python3 wan_watch.py < config.json

The configuration (JSON on standard input): prefix, peer (the announcing switch's address),
stop_file, limit_s. Every 20 ms it asks FRR (`vtysh -c 'show bgp ipv4 unicast PREFIX json'`)
whether the PE holds `peer`'s own announcement of `prefix` (a path from it whose AS path is its
AS alone: once it withdraws, it may pass on another switch's path), and records each change with the time it
was seen (time.time(): in the virtual lab every device shares the lab machine's clock). It runs
until `stop_file` exists (or `limit_s` passes) and prints {"events": [[time, present], ...]}.
Timed here, a withdrawal is seen without an SSH round trip per look.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def present(prefix: str, peer: str) -> bool | None:
    """Whether FRR holds a path to `prefix` from `peer`; None when vtysh did not answer."""
    try:
        out = subprocess.run(
            ["vtysh", "-c", f"show bgp ipv4 unicast {prefix} json"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except subprocess.TimeoutExpired:
        return None
    try:
        paths = json.loads(out).get("paths", []) if out.startswith("{") else []
    except ValueError:
        return None
    return any(
        str((p.get("peer") or {}).get("peerId") or p.get("peerId")) == peer
        and len(str((p.get("aspath") or {}).get("string", "")).split()) == 1
        for p in paths
    )


def main() -> None:
    config = {"limit_s": 120.0, "interval": 0.02}
    config.update(json.load(sys.stdin))
    events: list[list] = []
    last = None
    end = time.monotonic() + config["limit_s"]
    while time.monotonic() < end and not os.path.exists(config["stop_file"]):
        seen_at = time.time()
        now = present(config["prefix"], config["peer"])
        if now is not None and now != last:
            events.append([seen_at, now])
            last = now
        time.sleep(config["interval"])
    print(json.dumps({"events": events}))


if __name__ == "__main__":
    main()
