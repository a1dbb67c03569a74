"""Which functions a deploy keeps on the gateway, planned on the machine running pyinfra.

The inventory's `edgefaas_functions` names each function with its placement, limits and
environment; the code comes from `edgefaas_functions_dir` (functions/). The deploy writes
the manifest made here beside the code on the K3S server, and `edgefaas sync-functions`
(edgefaas.gateway.sync) brings the gateway in line with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pyinfra.api.exceptions import DeployError

from edgefaas.deploy import hosts
from edgefaas.deploy.settings import setting
from edgefaas.gateway.sync import MANIFEST_FIELDS, code_sha256, wanted_state

# face_expression calls every Triton server of the inventory unless told which.
TRITON_CALLER = "face_expression.py"


def triton_urls(inventory: Iterable[Any]) -> str:
    """HTTP endpoints of every Triton server in the inventory (deploys/triton.py), comma-separated."""
    urls = []
    for other in inventory:
        if other.data.get("triton_server"):
            address = hosts.address(other)
            urls.append(f"http://{address}:{other.data.get('triton_http_port') or 8000}")
    return ",".join(urls)


def wanted_functions(current: Any, inventory: Iterable[Any]) -> list[dict[str, Any]]:
    """The functions to keep deployed on `current`'s gateway, by name: each a manifest entry, plus
    `path` (its code here) and `codeSha256`. A function whose file is missing fails the host."""
    source = Path(setting(current, "edgefaas_functions_dir"))
    public = set(setting(current, "edgefaas_public_functions"))
    wanted = []
    for name, settings in sorted(setting(current, "edgefaas_functions").items()):
        path = source / settings.get("file", f"{name}.py")
        if not path.is_file():
            raise DeployError(f"{current.name}: function {name}: {path} does not exist")
        env = {str(k): str(v) for k, v in settings.get("envVars", {}).items()}
        if path.name == TRITON_CALLER and "TRITON_URLS" not in env:
            env["TRITON_URLS"] = triton_urls(inventory)
        wanted.append(
            {
                "service": name,
                "file": path.name,
                "constraints": list(settings.get("constraints", [])),
                "limits": dict(settings.get("limits", {})),
                "public": bool(settings.get("public", name in public)),
                "envVars": env,
                "path": str(path),
                "codeSha256": code_sha256(path.read_text()),
            }
        )
    return wanted


def manifest(wanted: list[dict[str, Any]]) -> str:
    """The manifest `edgefaas sync-functions` deploys from, each function's file beside it."""
    return json.dumps([{k: w[k] for k in MANIFEST_FIELDS} for w in wanted], indent=2) + "\n"


def check_manifest(wanted: list[dict[str, Any]]) -> str:
    """What `edgefaas sync-functions --check` compares, the code as its digest: asked before the
    deploy uploads anything, so a new version is seen before its file is on the device."""
    return json.dumps(
        [{"service": w["service"], **wanted_state(w, w["codeSha256"])} for w in wanted],
        separators=(",", ":"),
        sort_keys=True,
    )


def out_of_date(wanted: list[dict[str, Any]], checked: list[str] | None) -> list[str]:
    """Names of the wanted functions to deploy or update: those the check named, in the wanted
    order, or all of them when the check could not tell (None)."""
    if checked is None:
        return [w["service"] for w in wanted]
    return [w["service"] for w in wanted if w["service"] in checked]
