"""Writing a SONiC switch's CONFIG_DB from a pyinfra deploy, through `edgefaas config-db` on it.

Each deploy owns its entries (`ensure(owner, owned, shared, what)`): the device-side tool
writes them whole, sets shared fields only when absent or equal, and records what it
wrote, so `remove(owner, what)` (uninstall) deletes exactly those. The operations ask the
device first (`ConfigDbDiff`) and run only when something differs, so a re-run changes
nothing. Hosts without `sonic_config_db` in their data (Jetsons, plain Linux) are skipped.

The wanted entries are checked here, before any host is touched (edgefaas.sonic.config_db
is pure Python up to the database connection, so the control machine runs the same check).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, StringCommand, operation

from edgefaas.sonic.config_db import check_owner, parse_wanted

DEFAULT_VENV = "/opt/edgefaas/venv"
SAME, DIFFERS = "same", "differs"


def wanted_document(owned: Mapping[str, Any], shared: Mapping[str, Any] | None = None) -> str:
    """The JSON `edgefaas config-db` reads; raises ValueError (naming key and field) when invalid."""
    document = {"owned": dict(owned), "shared": dict(shared or {})}
    parse_wanted(document)
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


EMPTY = json.dumps({"owned": {}, "shared": {}}, sort_keys=True, separators=(",", ":"))


def tool(venv: str | None = None) -> str:
    return f"{venv or host.data.get('edgefaas_venv') or DEFAULT_VENV}/bin/edgefaas config-db"


def _piped(document: str, command: str) -> str:
    return f"printf '%s\\n' {shlex.quote(document)} | {command}"


def diff_command(owner: str, document: str, venv: str | None = None) -> str:
    # The status is printed rather than returned: 1 ("differs") is an answer, not a failure.
    return _piped(document, f"{tool(venv)} diff --owner {shlex.quote(owner)} - 2>&1") + '; echo "exit=$?"'


def diff_state(output: list[str]) -> str:
    """The diff's answer: "same", "differs", or what kept it from telling (its last error line)."""
    status = next((line[5:] for line in reversed(output) if line.startswith("exit=")), "")
    if status == "0":
        return SAME
    if status == "1":
        return DIFFERS
    errors = [line for line in output if line.startswith("error:")]
    reason = errors[-1] if errors else (output[-2] if len(output) > 1 else "no answer")
    return f"cannot tell (exit {status or '?'}): {reason}"


class ConfigDbDiff(FactBase[str]):
    """Whether the device's databases hold `document` for `owner`: "same", "differs", or why not known.

    Before the platform deploy has installed the tool this is "cannot tell": the operation
    then runs `apply`, which reports the reason on that host if it still cannot.
    """

    def command(self, owner: str, document: str) -> str:
        return diff_command(owner, document)

    def process(self, output: list[str]) -> str:
        return diff_state(output)


def apply_command(owner: str, document: str, venv: str | None = None) -> str:
    return _piped(document, f"{tool(venv)} apply --owner {shlex.quote(owner)} -")


def remove_command(owner: str, venv: str | None = None) -> str:
    return f"{tool(venv)} remove --owner {shlex.quote(owner)}"


@operation()
def _apply(owner: str, document: str):
    if host.get_fact(ConfigDbDiff, owner=owner, document=document) != SAME:
        yield StringCommand(apply_command(owner, document))


@operation()
def _remove(owner: str):
    # Nothing wanted: the diff tells whether any entry the owner recorded is still there.
    if host.get_fact(ConfigDbDiff, owner=owner, document=EMPTY) != SAME:
        yield StringCommand(remove_command(owner))


def ensure(
    owner: str,
    owned: Mapping[str, Any],
    shared: Mapping[str, Any] | None,
    what: str,
    name: str | None = None,
) -> Any:
    """Keep `owner`'s entries in the device's databases as given (all of them: unlisted ones go).

    The operation is "Write <what> to CONFIG_DB" unless `name` says it all ("Open the
    gateway's port 8080/tcp in the control-plane ACL (CONFIG_DB)"). None on hosts without
    `sonic_config_db`. Raises ValueError, naming the key and field, for invalid entries.
    """
    check_owner(owner)
    document = wanted_document(owned, shared)
    if not host.data.get("sonic_config_db"):
        return None
    return _apply(owner=owner, document=document, name=name or f"Write {what} to CONFIG_DB")


def remove(owner: str, what: str, name: str | None = None) -> Any:
    """Delete every entry `owner` wrote to the device's databases ("Remove <what> from CONFIG_DB",
    unless `name` is given); None without `sonic_config_db`."""
    check_owner(owner)
    if not host.data.get("sonic_config_db"):
        return None
    return _remove(owner=owner, name=name or f"Remove {what} from CONFIG_DB")
