"""What the benches share: one headless locust run (alone, or as a master with local workers).

Every run writes, under `out`: locust's CSV files (`locust-<tag>_stats.csv`, ..., and with
--csv-full-history `locust-<tag>_stats_history.csv`, the percentiles over time that
`edgefaas perf` plots), locust's own HTML report (`locust-<tag>.html`), its log, and the
samples file the locustfiles write (every call's own, unrounded response time).

Distributed mode (`workers` > 0): one `locust --master --expect-workers N` and N
`locust --worker --master-host 127.0.0.1` processes on this machine. Each worker writes its
own samples file (`samples-<tag>.<pid>.json`); they are merged here. On a real lab the
workers run on other machines, started by hand with the same locustfile and options:

    locust -f src/edgefaas/perf/locustfile_functions.py DirectUser --worker --master-host <master's address>
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefaas.perf.stats import percentile


class LocustRunError(RuntimeError):
    """locust did not stop, or wrote no samples."""


@dataclass
class LatencyFigures:
    """The figures every bench reports for one side: calls, their time span, percentiles, rate."""

    calls: int
    errors: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    rps: float

    @classmethod
    def of(
        cls,
        times: Sequence[float],
        calls: int,
        errors: int,
        seconds: float,
        digits: int = 3,
        rps_digits: int = 2,
        **extra: Any,
    ) -> Any:
        """The figures of successful calls' `times` (ms) over `seconds`; `extra` for subclasses' fields."""
        ordered = sorted(times)
        return cls(
            calls=calls,
            errors=errors,
            seconds=round(seconds, 3),
            p50_ms=round(percentile(ordered, 50), digits),
            p90_ms=round(percentile(ordered, 90), digits),
            p99_ms=round(percentile(ordered, 99), digits),
            mean_ms=round(sum(ordered) / len(ordered), digits) if ordered else math.nan,
            rps=round(calls / seconds, rps_digits) if seconds > 0 else 0.0,
            **extra,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def locust_env(keep: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment without LOCUST_* (which would override the command line), but `keep`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_") or k in keep}


def locust_commands(
    locustfile: Path,
    user_class: str,
    users: int,
    seconds: float,
    out: Path,
    tag: str,
    options: Sequence[str] = (),
    workers: int = 0,
    prefix: Sequence[str] = (),
    port: int = 0,
) -> list[list[str]]:
    """The command lines of one run: [locust] alone, or [master, worker, ...] with `workers` > 0.

    `options` are the locustfile's own (each process needs them); `prefix` goes before each
    command (e.g. taskset). locust takes whole seconds: `seconds` is rounded up.
    """
    base = [*prefix, sys.executable, "-m", "locust", "-f", str(locustfile), user_class]
    own = [*options, "--samples-file", str(out / f"samples-{tag}.json"), "--loglevel", "WARNING"]
    main = [
        *base, "--headless", "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{max(1, math.ceil(seconds))}s", "--stop-timeout", "5", "--only-summary",
        "--csv", str(out / f"locust-{tag}"), "--csv-full-history", "--html", str(out / f"locust-{tag}.html"),
        *own,
    ]  # fmt: skip
    if workers <= 0:
        return [main]
    master = [
        *main, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
        "--expect-workers", str(workers), "--expect-workers-max-wait", "60",
    ]  # fmt: skip
    worker = [*base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port), *own]
    return [master, *([worker] * workers)]


def merged_samples(out: Path, tag: str) -> dict[str, Any] | None:
    """The samples file of a run, with its workers' files (samples-<tag>.<pid>.json) merged in."""
    files = [out / f"samples-{tag}.json", *sorted(out.glob(f"samples-{tag}.[0-9]*.json"))]
    found = [json.loads(path.read_text()) for path in files if path.is_file()]
    if not found:
        return None
    merged = {"users": found[0].get("users", []), "samples": [], "files": len(found)}
    for part in found:
        merged["samples"].extend(part.get("samples", []))
    merged["samples"].sort(key=lambda sample: sample["t"])
    return merged


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    process.wait()


def run_locust(
    locustfile: Path,
    user_class: str,
    users: int,
    seconds: float,
    out: Path,
    tag: str,
    options: Sequence[str] = (),
    env: dict[str, str] | None = None,
    workers: int = 0,
    prefix: Sequence[str] = (),
    grace: float = 90.0,
) -> dict[str, Any]:
    """One headless run (master and `workers` local workers if asked); its merged samples.

    LocustRunError when it does not stop within `seconds` + `grace` or writes no samples.
    """
    commands = locust_commands(
        locustfile, user_class, users, seconds, out, tag, options, workers, prefix,
        free_port() if workers > 0 else 0,
    )  # fmt: skip
    log_path = out / f"locust-{tag}.log"
    processes: list[subprocess.Popen] = []
    with log_path.open("wb") as log:
        try:
            for command in commands:
                processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))
            try:
                processes[0].wait(timeout=seconds + grace)
            except subprocess.TimeoutExpired:
                raise LocustRunError(f"locust {tag} did not stop; see {log_path}") from None
            for worker in processes[1:]:  # they quit when the master does
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.wait(timeout=30)
        finally:
            for process in processes:
                if process.poll() is None:
                    _kill(process)
    samples = merged_samples(out, tag)
    if samples is None:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise LocustRunError(f"locust {tag} wrote no samples (status {processes[0].returncode}):\n{tail}")
    return samples


# -- for the locustfiles (kept free of a module-level locust import: the benches import this too) --


def add_license_token_option(parser: Any, help: str) -> None:
    """--license-token (env LOCUST_LICENSE_TOKEN), a secret locust keeps out of its UI and logs."""
    parser.add_argument(
        "--license-token", default="", env_var="LOCUST_LICENSE_TOKEN", is_secret=True, help=help
    )


def add_ca_file_option(parser: Any) -> None:
    """--ca-file (env EDGEFAAS_CA_FILE): the CA an HTTPS gateway is verified by."""
    parser.add_argument(
        "--ca-file",
        default="",
        env_var="EDGEFAAS_CA_FILE",
        help="PEM of the CA that certifies an https:// gateway (the blueprint's, /etc/edgefaas/ca.pem); "
        "without it an HTTPS gateway is checked against the system's store",
    )


def ca_only_context_factory(ca_file: str) -> Callable[..., ssl.SSLContext]:
    """A FastHttpUser ssl_context_factory trusting the CA in `ca_file` alone."""

    def factory(cafile: str | None = None) -> ssl.SSLContext:
        # geventhttpclient offers its own bundle as `cafile`: taken, the gateway would also be
        # trusted for any public CA's certificate, so it is ignored. ssl is looked up now, after
        # locust's gevent patching, so the context is gevent's.
        return ssl.create_default_context(cafile=ca_file)

    return factory


def verify_gateway_by_ca(user: Any, environment: Any) -> None:
    """Make a FastHttpUser verify HTTPS by --ca-file alone; call before FastHttpUser.__init__.

    locust's FastHttpUser skips verification by default (insecure = True); here it always
    verifies, by the given CA, or by the system's store when none is given.
    """
    user.insecure = False
    ca_file = locust_option(environment, "ca_file")
    if ca_file:
        user.ssl_context_factory = ca_only_context_factory(ca_file)


def answer_problem(response: Any) -> str:
    """Why a FastHttpUser call failed, for locust's error report: the connection's own error
    (a refused certificate, a reset) when there was no answer, else the status and body."""
    error = getattr(response, "error", None)
    if not response.status_code and error is not None:
        return f"no answer: {error!r}"
    return f"HTTP {response.status_code}: {(response.text or '')[:200]}"


def locust_option(environment: Any, name: str, default: str = "") -> str:
    """A parsed locust option, or `default` when there are none (a library run)."""
    options = environment.parsed_options
    return getattr(options, name, default) if options else default


def write_samples(environment: Any, path_text: str, rows: list[Any]) -> None:
    """The samples file at test stop; a distributed run's worker adds its pid to the name."""
    from locust.runners import WorkerRunner

    path = Path(path_text)
    if isinstance(environment.runner, WorkerRunner):
        path = path.with_name(f"{path.stem}.{os.getpid()}{path.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    users = [u.__name__ for u in environment.user_classes]
    path.write_text(json.dumps({"users": users, "samples": rows}))
