"""`edgefaas sync-functions`: bring a gateway's functions in line with a manifest, through its API.

The manifest is a JSON list, one entry per function to keep deployed:

    [{"service": "FuncA", "file": "func_a.py", "constraints": [...], "limits": {...},
      "public": false, "envVars": {...}}]

with each `file` beside the manifest. A function the gateway lacks is deployed (POST
/system/functions); one whose code, constraints, limits, environment or public flag differ
is updated (PUT, a rolling update with no failed call); anything else is left as it is, and
functions the manifest does not list are never touched. One line per function; exit 1 if
any failed.

With --check nothing changes: it prints each listed function that is missing or differs
and exits 0 when none is, 1 when some are, 2 when it could not tell (the gateway does not
answer, the password or the manifest cannot be read). An entry may then give its
`codeSha256` instead of its file, so a deploy can ask before it uploads the code.

The admin password is read from a root-only file, never from the command line. Standard
library and click only: this runs in a device's venv, which has no gateway extras.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

# The fields that make a deployed function differ from the wanted one, with the value a
# gateway's status leaves out (or sets to null) when the function has none.
COMPARED: dict[str, Any] = {
    "codeSha256": "",
    "constraints": [],
    "limits": {},
    "public": False,
    "envVars": {},
}
# What a deploy writes for each function (the code is the file, hashed when read).
MANIFEST_FIELDS = ("service", "file", "constraints", "limits", "public", "envVars")
# A deploy waits until the function answers its readiness probe; the backend gives up at 90 s.
DEPLOY_TIMEOUT = 180.0
# How long a sync waits for a (re)started gateway to answer /healthz.
GATEWAY_WAIT = 60.0
# An unanswered check means "everything is out of date", soon: a deploy plans from it.
CHECK_TIMEOUT = 10.0

UP_TO_DATE, OUT_OF_DATE, UNKNOWN = 0, 1, 2


class SyncError(Exception):
    """The gateway or the manifest could not be read; the message says which and why."""


def code_sha256(code: str) -> str:
    """The digest the gateway reports as `codeSha256` for `code`."""
    return hashlib.sha256(code.encode()).hexdigest()


def wanted_state(entry: Mapping[str, Any], code_digest: str) -> dict[str, Any]:
    """The compared fields of a manifest entry, with the defaults a gateway applies."""
    state = {key: entry.get(key, empty) for key, empty in COMPARED.items()}
    state["codeSha256"] = code_digest
    return state


def differences(wanted: Mapping[str, Any], current: Mapping[str, Any] | None) -> list[str]:
    """The compared fields in which `current` (a gateway's FunctionStatus) differs from `wanted`.

    Every field when the gateway lacks the function.
    """
    if current is None:
        return list(COMPARED)
    return [key for key in COMPARED if (current.get(key) or type(wanted[key])()) != wanted[key]]


class Gateway:
    """The admin API of a gateway, as the `admin` user with the password in `password_file`."""

    def __init__(self, url: str, password_file: Path, ca_file: Path | None = None) -> None:
        self.url = url.rstrip("/")
        self.password_file = password_file
        # Loopback or the management network: never through a proxy from the environment; the
        # gateway's HTTPS verified by the blueprint's CA alone when one is given.
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if ca_file is not None:
            context = ssl.create_default_context(cafile=str(ca_file))
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    def _headers(self) -> dict[str, str]:
        try:
            password = self.password_file.read_text().strip()
        except OSError as exc:
            raise SyncError(f"cannot read the admin password {self.password_file}: {exc.strerror}") from None
        token = base64.b64encode(f"admin:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        """(status, decoded JSON answer); an answer that is not JSON comes as {"error": text}."""
        headers = self._headers()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=timeout) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                return exc.code, json.loads(text)
            except ValueError:
                return exc.code, {"error": text}

    def deployed(self, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        """{name: FunctionStatus} of every function the gateway runs."""
        try:
            status, listed = self.request("GET", "/system/functions", timeout=timeout)
        except OSError as exc:
            raise SyncError(f"the gateway at {self.url} does not answer: {exc}") from None
        if status != 200:
            raise SyncError(f"listing functions: {status} {listed}")
        return {f["name"]: f for f in listed}

    def wait_until_up(self, limit: float = GATEWAY_WAIT) -> None:
        """Until /healthz answers and the gateway has written its password (a first start)."""
        deadline = time.monotonic() + limit
        while True:
            try:
                with self._opener.open(self.url + "/healthz", timeout=2) as answer:
                    if answer.status == 200 and self.password_file.exists():
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SyncError(f"the gateway at {self.url} did not answer /healthz within {limit:.0f} s")
            time.sleep(0.5)


def read_manifest(path: str) -> list[dict[str, Any]]:
    """The manifest's entries; `-` reads standard input."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        entries = json.loads(text)
    except OSError as exc:
        raise SyncError(f"cannot read the manifest {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SyncError(f"the manifest {path} is not JSON: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("service") for e in entries):
        raise SyncError(f"the manifest {path} must be a list of objects, each with a service")
    return entries


def _code(manifest: str, entry: Mapping[str, Any]) -> str:
    if manifest == "-" or not entry.get("file"):
        raise SyncError(f"{entry['service']}: no file beside the manifest to read its code from")
    path = Path(manifest).parent / entry["file"]
    try:
        return path.read_text()
    except OSError as exc:
        raise SyncError(f"{entry['service']}: cannot read {path}: {exc.strerror}") from None


def check_manifest(gateway: Gateway, manifest: str, timeout: float = CHECK_TIMEOUT) -> int:
    """Print each listed function that is missing or differs; UP_TO_DATE, OUT_OF_DATE or UNKNOWN."""
    try:
        entries = read_manifest(manifest)
        wanted = {
            e["service"]: wanted_state(e, e.get("codeSha256") or code_sha256(_code(manifest, e)))
            for e in entries
        }
        deployed = gateway.deployed(timeout=timeout)
    except SyncError as exc:
        click.echo(str(exc), err=True)
        return UNKNOWN
    stale = 0
    for name, state in wanted.items():
        current = deployed.get(name)
        differ = differences(state, current)
        if current is None:
            click.echo(f"{name}: missing")
        elif differ:
            click.echo(f"{name}: differs in {', '.join(differ)}")
        else:
            continue
        stale += 1
    return OUT_OF_DATE if stale else UP_TO_DATE


def apply_manifest(
    gateway: Gateway, manifest: str, timeout: float = DEPLOY_TIMEOUT, wait: float = GATEWAY_WAIT
) -> int:
    """Deploy or update every listed function that is missing or differs; 1 if any failed.

    Waits `wait` seconds at most for the gateway, `timeout` for each function to be ready.
    """
    try:
        entries = read_manifest(manifest)
        codes = {e["service"]: _code(manifest, e) for e in entries}
        gateway.wait_until_up(wait)
        deployed = gateway.deployed()
    except SyncError as exc:
        click.echo(str(exc), err=True)
        return 1
    failed = 0
    for entry in entries:
        name, code = entry["service"], codes[entry["service"]]
        current = deployed.get(name)
        if current is not None and not differences(wanted_state(entry, code_sha256(code)), current):
            click.echo(f"{name}: up to date (version {current.get('version')})")
            continue
        body = {k: v for k, v in entry.items() if k in MANIFEST_FIELDS and k != "file"}
        body["code"] = code
        method = "POST" if current is None else "PUT"
        started = time.monotonic()
        try:
            status, answer = gateway.request(method, "/system/functions", body, timeout=timeout)
        except OSError as exc:
            status, answer = 0, {"error": str(exc)}
        took = time.monotonic() - started
        if status in (200, 202):
            where = ", ".join(answer.get("nodes") or []) or "not placed yet"
            what = "deployed" if method == "POST" else "updated"
            click.echo(f"{name}: {what} to version {answer.get('version')} on {where} in {took:.1f} s")
        else:
            failed += 1
            error = answer.get("error", answer) if isinstance(answer, dict) else answer
            click.echo(f"{name}: {method} answered {status}: {error}", err=True)
    return 1 if failed else 0


@click.command("sync-functions")
@click.option("--url", required=True, help="The gateway, e.g. https://127.0.0.1:8080.")
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify the gateway's HTTPS by this CA (the blueprint's: /etc/edgefaas/ca.pem on every node).",
)
@click.option(
    "--password-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the admin password (the gateway's <data dir>/admin-password).",
)
@click.option(
    "--manifest",
    required=True,
    help="JSON list of the functions to keep deployed, their files beside it; - reads stdin (--check only).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Change nothing: print what is missing or differs; exit 0 none, 1 some, 2 could not tell.",
)
@click.option(
    "--timeout",
    type=float,
    default=DEPLOY_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each deployed or updated function to be ready.",
)
def sync_functions(
    url: str, ca_file: Path | None, password_file: Path, manifest: str, check: bool, timeout: float
) -> None:
    """Deploy or update the functions a manifest lists, through the gateway's own API."""
    gateway = Gateway(url, password_file, ca_file)
    sys.exit(check_manifest(gateway, manifest) if check else apply_manifest(gateway, manifest, timeout))
