"""Schemathesis against the lab's gateway: its own /openapi.json, no 5xx, answers as documented.

    pytest -m lab tests/integration/test_gateway_schema.py [--inventory inventories/mylab.py]

The unit test (tests/unit/test_gateway_schema.py) fuzzes an in-process gateway with fakes;
this one sends fewer cases to the real one (kubernetes backend, the deployed functions),
over the network as a user would, with the admin's password read over SSH.

The lab is shared and its functions are in use, so nothing that exists is changed:
- every GET operation, with data that fits (read-only calls on the functions and licenses
  that exist, to check real answers against the document) and data that does not;
- operations that change things only with names schemathesis makes up, never one of the
  functions deployed before the run (FuncA, FuncB, FuncC, system_info, camera,
  face-expression, ...), and only where nothing could be created: negative cases (which
  the gateway must refuse), plus DELETEs, scaling and function calls, which on a made-up
  name find nothing. Deploys, updates, new plans and new licenses with valid data are left
  to the unit test (they would start pods, and plans never go away).
After the run, anything that appeared anyway is removed, and the functions that were there
must be exactly as they were (version, replicas).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import GenerationMode

from tests.integration.conftest import admin_password, blueprint_ca
from tests.schema_support import OPERATIONS, fuzz, gateway_config, operation_id

EXAMPLES = int(os.environ.get("EDGEFAAS_SCHEMA_EXAMPLES", "0")) or None
SYSTEM_EXAMPLES = EXAMPLES or 8
FUNCTION_EXAMPLES = EXAMPLES or 3
# Changing operations whose valid cases, on a made-up name, change nothing (they find no function).
HARMLESS_WHEN_POSITIVE = {
    ("/system/functions", "delete"),
    ("/system/scale-function/{name}", "post"),
    ("/system/licenses/{license_id}", "delete"),
}


def lab_safe(path: str, method: str, mode: GenerationMode) -> bool:
    if method == "get" or not mode.is_positive:
        return True
    return path.startswith(("/function/", "/async-function/")) or (path, method) in HARMLESS_WHEN_POSITIVE


CASES = [
    pytest.param(path, method, mode, id=f"{operation_id(path, method)}-{mode}")
    for path, method in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if lab_safe(path, method, mode)
]


def names_in(case: Any) -> set[str]:
    """Every function or license name a case would act on."""
    found = set()
    for where, key in (
        (case.path_parameters, "name"),
        (case.path_parameters, "license_id"),
        (case.query, "name"),
        (case.body, "service"),
        (case.body, "functionName"),
        (case.body, "serviceName"),
    ):
        if isinstance(where, dict) and isinstance(where.get(key), str):
            found.add(where[key])
    return found


def _functions(client: httpx.Client) -> dict[str, dict[str, Any]]:
    answer = client.get("/system/functions")
    assert answer.status_code == 200, answer.text
    return {f["name"]: f for f in answer.json()}


def _licenses(client: httpx.Client) -> dict[str, dict[str, Any]]:
    answer = client.get("/system/licenses")
    assert answer.status_code == 200, answer.text
    return {lic["id"]: lic for lic in answer.json()}


@pytest.fixture(scope="module")
def lab(server, admin, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """The lab gateway's schema; what existed before is protected, and checked untouched afterwards."""
    base = str(admin.base_url).rstrip("/")
    password = admin_password(server)
    ca_file = None
    if base.startswith("https:"):
        ca_file = str(tmp_path_factory.mktemp("ca") / "ca.pem")
        Path(ca_file).write_text(blueprint_ca(server))
    before_functions, before_licenses = _functions(admin), _licenses(admin)
    host = httpx.URL(base).host
    with pytest.MonkeyPatch.context() as env:
        # schemathesis calls through requests, which honours proxy variables; the gateway is a neighbour.
        env.setenv("NO_PROXY", ",".join(filter(None, [os.environ.get("NO_PROXY"), host])))
        schema = schemathesis.openapi.from_url(
            f"{base}/openapi.json", config=gateway_config(password, ca_file=ca_file), verify=ca_file or True
        )
        yield {
            "schema": schema,
            "protected": set(before_functions) | set(before_licenses),
            "functions": sorted(before_functions),
            "licenses": sorted(before_licenses),
        }
    after_functions = _functions(admin)
    for name in set(after_functions) - set(before_functions):
        admin.request("DELETE", "/system/functions", json={"functionName": name})
    for license_id, license in _licenses(admin).items():
        if license_id not in before_licenses and not license["revoked"]:
            admin.delete(f"/system/licenses/{license_id}")
    changed = {
        name: (was["version"], was["replicas"], after_functions.get(name))
        for name, was in before_functions.items()
        if name not in after_functions
        or (after_functions[name]["version"], after_functions[name]["replicas"])
        != (was["version"], was["replicas"])
    }
    assert not changed, f"deployed functions changed during the run (fuzzing, or a deploy): {changed}"
    assert set(after_functions) - set(before_functions) == set(), "the fuzzing deployed functions"


@pytest.mark.parametrize(("path", "method", "mode"), CASES)
def test_lab_gateway_gives_no_server_error_and_answers_match_the_document(lab, path, method, mode):
    protected = lab["protected"]
    read_only = method == "get" and path.startswith("/system/")
    fuzz(
        lab["schema"],
        path,
        method,
        mode,
        SYSTEM_EXAMPLES if path.startswith("/system/") else FUNCTION_EXAMPLES,
        # Positive reads are pointed at what exists; nothing else ever is.
        functions=lab["functions"] if read_only else (),
        licenses=lab["licenses"] if read_only else (),
        keep=(lambda case: not _followed_log(case))
        if read_only
        else (lambda case: not names_in(case) & protected),
    )


def _followed_log(case: Any) -> bool:
    # A followed log streams as long as the function logs (OpenFaaS's behaviour): no answer ends
    # within a fuzzing request's timeout. The unit suite fuzzes it against a short-lived stream.
    follow = str((case.query or {}).get("follow", "")).lower()
    return case.path == "/system/logs" and follow in ("true", "1")
