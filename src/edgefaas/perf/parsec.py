"""Latency of the Python Parsec client next to the official Rust client, in one run.

    .venv/bin/python -m edgefaas.perf.parsec [--endpoint unix:/path] [--duration 5]
        [--clients 1,2,4,8] [--ops ping,ecc-sign,rsa-encrypt] [--json OUT]

What is measured: for each operation (ping; ECDSA P-256 SHA-256 sign_hash; RSA-2048
PKCS#1 v1.5 encrypt) and each number of concurrent clients, every request's latency
from the caller's side (connect, send, wait, read, decode) for --duration seconds.
Python: N threads, one ParsecClient each. Rust: parsec_baseline beside this module, the same
loop with N threads and one BasicClient each (parsec-client crate). The two run one
after the other for each cell against the same service, so machine noise hits both.
Keys are made once before the timed loops and destroyed afterwards.

How to read it: p50/p99 are per request, ops/s is all threads together. The target is
Python p50 <= 1.2x Rust p50 ("ok" / "over"); it is reported, never asserted. Beware
of the service's floor: its accept loop sleeps idle_listener_sleep_duration (10 ms by
default) whenever no connection is waiting, and every request is a new connection,
so a lone client waits out most of that sleep whatever it does. The last section
pings a default service and one with the sleep set to 1 ms: if the floor moves with
the setting, the main table compares the clients through the service's sleep, and
small client-side costs hide under it; --idle-sleep 1 runs the table against a
service with a 1 ms sleep, where they show more.

Without --endpoint the bench starts its own Parsec service (the built artifact, as root
with allow_root, socket and keys in a temp dir) and stops it at the end. The floor
experiment always uses private services. Exit status 1 only when the benchmark broke
(a service would not start, the baseline would not build, a request failed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from edgefaas.lab.builds.parsec import PARSEC_SERVICE_VERSION
from edgefaas.lab.paths import artifact_dir, cache_dir
from edgefaas.parsec import ParsecClient, ParsecError, ecdsa, rsa_pkcs1v15_crypt
from edgefaas.parsec.attributes import ecc_sign_key_attributes, rsa_encrypt_key_attributes
from edgefaas.perf.stats import percentile

SERVICE_BIN = artifact_dir() / f"parsec-service-{PARSEC_SERVICE_VERSION}" / "bin" / "parsec"
BASELINE_SRC = Path(__file__).with_name("parsec_baseline")
# What cargo builds the baseline from: package data, so an installed edgefaas can build it too.
BASELINE_SOURCES = ("Cargo.toml", "Cargo.lock", "src/main.rs")
# Build output lives in a cache, never beside the sources (an installed package's folder).
BASELINE_TARGET = cache_dir() / "cargo-target" / "parsec-baseline"
BASELINE_BIN = BASELINE_TARGET / "release/parsec-baseline"
OPS = ("ping", "ecc-sign", "rsa-encrypt")
TARGET_RATIO = 1.2  # Python p50 may be at most this many times the Rust p50
# Same inputs as the Rust baseline, so both ask the service for the same work.
DIGEST = b"\x5a" * 32
PLAINTEXT = b"parsec bench payload"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the service


def service_config(root: Path, idle_sleep_ms: int | None = None, timeout_ms: int = 200) -> str:
    """A parsec-service config that keeps everything (socket, key mappings) under `root`."""
    idle = f"idle_listener_sleep_duration = {idle_sleep_ms}\n" if idle_sleep_ms is not None else ""
    return f"""[core_settings]
allow_root = true
log_level = "error"
{idle}
[listener]
listener_type = "DomainSocket"
timeout = {timeout_ms}
socket_path = "{root}/parsec.sock"

[authenticator]
auth_type = "UnixPeerCredentials"

[[key_manager]]
name = "sqlite-manager"
manager_type = "SQLite"
sqlite_db_path = "{root}/kim-mappings.sqlite3"

[[provider]]
name = "mbed-crypto-provider"
provider_type = "MbedCrypto"
key_info_manager = "sqlite-manager"
"""


@contextmanager
def private_service(idle_sleep_ms: int | None = None) -> Iterator[str]:
    """Run a throwaway Parsec service; yields its endpoint, stops it (SIGTERM, wait) after."""
    root = Path(tempfile.mkdtemp(prefix="parsec-bench-"))
    (root / "config.toml").write_text(service_config(root, idle_sleep_ms))
    endpoint = f"unix:{root}/parsec.sock"
    with open(root / "service.log", "wb") as service_log:
        # cwd matters: Mbed Crypto keeps key material in the working directory.
        proc = subprocess.Popen(
            [str(SERVICE_BIN), "--config", str(root / "config.toml")],
            cwd=root,
            stdout=service_log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise SystemExit(
                    f"parsec exited with {proc.returncode}:\n{(root / 'service.log').read_text()}"
                )
            try:
                ParsecClient(endpoint, timeout=1).ping()
                break
            except ParsecError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"parsec did not answer on {endpoint} within 15 s") from None
                time.sleep(0.05)
        yield endpoint
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by its handle
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- the two clients


def build_baseline() -> Path:
    """Build the Rust baseline unless the cached binary is newer than its sources."""
    sources = [BASELINE_SRC / name for name in BASELINE_SOURCES]
    if BASELINE_BIN.exists() and all(BASELINE_BIN.stat().st_mtime >= s.stat().st_mtime for s in sources):
        return BASELINE_BIN
    log(f"building the Rust baseline into {BASELINE_TARGET} (a minute or two the first time)...")
    started = time.monotonic()
    proc = subprocess.run(
        ["nice", "cargo", "build", "--release", "--locked"],
        cwd=BASELINE_SRC,
        env={**os.environ, "CARGO_TARGET_DIR": str(BASELINE_TARGET)},
    )
    if proc.returncode != 0 or not BASELINE_BIN.exists():
        raise SystemExit("building the Rust baseline failed (cargo output above)")
    log(f"baseline built in {time.monotonic() - started:.0f} s")
    return BASELINE_BIN


def run_rust(binary: Path, endpoint: str, op: str, clients: int, duration: float) -> dict:
    proc = subprocess.run(
        [str(binary), op, str(clients), "--duration", str(duration)],
        env={**os.environ, "PARSEC_SERVICE_ENDPOINT": endpoint},
        capture_output=True,
        text=True,
        timeout=duration + 180,  # RSA key generation can take long on a busy machine
    )
    if proc.returncode != 0:
        raise SystemExit(f"parsec-baseline {op} {clients} failed ({proc.returncode}):\n{proc.stderr}")
    out = json.loads(proc.stdout)
    return summarize([us / 1000 for us in out["latencies_us"]], out["elapsed_s"], out["errors"])


def _request(client: ParsecClient, op: str, key: str) -> Callable[[], object]:
    # The algorithm is passed explicitly, as the Rust client must: left out, the
    # Python client would look it up with an extra ListKeys round trip per request.
    if op == "ping":
        return client.ping
    if op == "ecc-sign":
        alg = ecdsa()
        return lambda: client.sign_hash(key, DIGEST, alg)
    alg = rsa_pkcs1v15_crypt()
    return lambda: client.asymmetric_encrypt(key, PLAINTEXT, alg)


def run_python(endpoint: str, op: str, clients: int, duration: float, key: str) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def worker() -> None:
        request = _request(ParsecClient(endpoint), op, key)
        mine: list[float] = []
        failed = 0
        # Any exception counts as a failed request (and fails the run) rather than
        # silently ending the thread and losing its figures.
        try:
            request()  # untimed: authenticator and provider discovery happen here
        except Exception:
            failed += 1
        start.wait()
        stop = time.perf_counter() + duration
        while time.perf_counter() < stop:
            t = time.perf_counter_ns()
            try:
                request()
            except Exception:
                failed += 1
                continue
            mine.append((time.perf_counter_ns() - t) / 1e6)
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return summarize(latencies, time.perf_counter() - started, errors[0])


@contextmanager
def python_keys(endpoint: str, ops: list[str]) -> Iterator[str]:
    """Create the Python side's keys once, destroy them at the end; yields the key name."""
    client = ParsecClient(endpoint)
    key = f"parsec-bench-py-{os.getpid()}"  # pid: no clash with other runs under this uid
    made: list[str] = []
    try:
        if "ecc-sign" in ops:
            client.generate_key(f"{key}-ecc-sign", ecc_sign_key_attributes())
            made.append(f"{key}-ecc-sign")
        if "rsa-encrypt" in ops:
            client.generate_key(f"{key}-rsa-encrypt", rsa_encrypt_key_attributes(2048))
            made.append(f"{key}-rsa-encrypt")
        yield key
    finally:
        for name in made:
            client.destroy_key(name)


# ---------------------------------------------------------------- figures


def summarize(latencies_ms: list[float], elapsed_s: float, errors: int) -> dict:
    ordered = sorted(latencies_ms)
    if not ordered:
        return {"n": 0, "errors": errors, "p50_ms": None, "p99_ms": None, "ops_s": 0.0}
    return {
        "n": len(ordered),
        "errors": errors,
        "p50_ms": percentile(ordered, 50),
        "p99_ms": percentile(ordered, 99),
        "ops_s": len(ordered) / elapsed_s,
    }


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(cells: list[dict]) -> None:
    head = ("op", "clients", *(f"{side} {col}" for side in ("py", "rs") for col in ("p50", "p99", "ops/s")))
    head = (*head, "py/rs", "target")
    rows = [head]
    for c in cells:
        py, rs = c["python"], c["rust"]
        rows.append(
            (
                c["op"],
                str(c["clients"]),
                _fmt(py["p50_ms"]),
                _fmt(py["p99_ms"]),
                _fmt(py["ops_s"], ".0f"),
                _fmt(rs["p50_ms"]),
                _fmt(rs["p99_ms"]),
                _fmt(rs["ops_s"], ".0f"),
                _fmt(c["ratio_p50"]),
                c["target"],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    print(f"latency in ms; target: Python p50 <= {TARGET_RATIO}x Rust p50")
    for r in rows:
        print(
            "  ".join(
                v.rjust(w) if i > 0 else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))
            )
        )


def measure_cell(binary: Path, endpoint: str, op: str, clients: int, duration: float, key: str) -> dict:
    log(f"{op} x{clients}: python...")
    py = run_python(endpoint, op, clients, duration, f"{key}-{op}")
    log(f"{op} x{clients}: rust...")
    rs = run_rust(binary, endpoint, op, clients, duration)
    ratio = py["p50_ms"] / rs["p50_ms"] if py["p50_ms"] and rs["p50_ms"] else None
    target = "-" if ratio is None else ("ok" if ratio <= TARGET_RATIO else "over")
    return {"op": op, "clients": clients, "python": py, "rust": rs, "ratio_p50": ratio, "target": target}


def measure_floor(binary: Path, duration: float) -> dict:
    """Ping with one client against a default service and one whose accept loop sleeps 1 ms."""
    floor = {}
    for label, idle in (("default (10 ms)", None), ("1 ms", 1)):
        with private_service(idle) as endpoint:
            log(f"floor, idle_listener_sleep_duration {label}: python, rust...")
            floor[label] = {
                "idle_listener_sleep_duration_ms": 10 if idle is None else idle,
                "python": run_python(endpoint, "ping", 1, duration, ""),
                "rust": run_rust(binary, endpoint, "ping", 1, duration),
            }
    return floor


def print_floor(floor: dict) -> None:
    print("\nservice floor: ping, 1 client, p50 (p99) ms by idle_listener_sleep_duration")
    for label, f in floor.items():
        py, rs = f["python"], f["rust"]
        ratio = py["p50_ms"] / rs["p50_ms"] if py["p50_ms"] and rs["p50_ms"] else None
        print(
            f"  {label:>15}: Python {_fmt(py['p50_ms'])} ({_fmt(py['p99_ms'])})"
            f"   Rust {_fmt(rs['p50_ms'])} ({_fmt(rs['p99_ms'])})   py/rs p50 {_fmt(ratio)}"
        )
    default, fast = (f["rust"]["p50_ms"] for f in floor.values())
    if default and fast and fast < 0.5 * default:
        print(
            f"  -> the setting moves the floor: Rust ping p50 {default:.2f} -> {fast:.2f} ms;"
            " at the default, a request's latency is mostly the service's accept-loop sleep,"
            " not the client's work."
        )
    else:
        print("  -> the setting does not move the floor noticeably on this machine.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoint", help="an already running service, e.g. unix:/run/parsec/parsec.sock")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument("--clients", default="1,2,4,8", help="concurrent clients, comma-separated")
    parser.add_argument("--ops", default=",".join(OPS), help="operations, comma-separated")
    parser.add_argument(
        "--idle-sleep", type=int, metavar="MS", help="idle_listener_sleep_duration of the private service"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every figure to this file")
    args = parser.parse_args(argv)
    ops = args.ops.split(",")
    if unknown := set(ops) - set(OPS):
        parser.error(f"unknown ops {sorted(unknown)}; choose from {', '.join(OPS)}")
    clients = [int(n) for n in args.clients.split(",")]

    binary = build_baseline()
    service = private_service(args.idle_sleep) if args.endpoint is None else nullcontext(args.endpoint)
    with service as endpoint, python_keys(endpoint, ops) as key:
        cells = [measure_cell(binary, endpoint, op, n, args.duration, key) for op in ops for n in clients]
    floor = measure_floor(binary, args.duration)

    print_table(cells)
    print_floor(floor)
    if args.json:
        idle = "default" if args.idle_sleep is None else f"{args.idle_sleep} ms"
        used = args.endpoint or f"private, idle_listener_sleep_duration {idle}"
        figures = {
            "service": used,
            "duration_s": args.duration,
            "target_ratio": TARGET_RATIO,
            "cells": cells,
            "floor": floor,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    failed = sum(side["errors"] for c in cells for side in (c["python"], c["rust"]))
    failed += sum(side["errors"] for f in floor.values() for side in (f["python"], f["rust"]))
    if failed:
        raise SystemExit(f"{failed} requests failed: the figures above are not to be trusted")


if __name__ == "__main__":
    main()
