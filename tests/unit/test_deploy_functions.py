"""Which functions a deploy keeps on the gateway (edgefaas.deploy.functions)."""

from __future__ import annotations

import hashlib
import json

import pytest
from pyinfra.api.exceptions import DeployError

from edgefaas.deploy.functions import check_manifest, manifest, out_of_date, triton_urls, wanted_functions
from edgefaas.gateway.sync import COMPARED

from .deploy_fakes import FakeHost

pytestmark = pytest.mark.unit


def _server(tmp_path, **data):
    (tmp_path / "FuncA.py").write_text("def handle(event, context):\n    return {}\n")
    (tmp_path / "face_expression.py").write_text("# faces\n")
    settings = {
        "edgefaas_functions_dir": str(tmp_path),
        "edgefaas_functions": {
            "FuncA": {"constraints": ["edgefaas.io/profile=sonic"], "limits": {"memory": "128Mi"}},
            "face-expression": {"file": "face_expression.py", "envVars": {"LEVEL": 2}},
        },
        "edgefaas_public_functions": ["face-expression"],
    }
    return FakeHost("sonic-1", ("sonic", "k3s_server"), **{**settings, **data})


INVENTORY = [
    FakeHost("sonic-1", ("sonic", "k3s_server"), triton_server=True, k3s_node_ip="10.77.0.11"),
    FakeHost(
        "jetson-1",
        ("jetson", "k3s_agent"),
        triton_server=True,
        ssh_hostname="10.77.0.13",
        triton_http_port=9000,
    ),
    FakeHost("sonic-2", ("sonic", "k3s_agent"), ssh_hostname="10.77.0.12"),
]


def test_triton_urls_name_every_triton_server_at_its_http_port():
    assert triton_urls(INVENTORY) == "http://10.77.0.11:8000,http://10.77.0.13:9000"
    assert triton_urls([]) == ""


def test_the_wanted_functions_come_by_name_with_their_settings_and_code_digest(tmp_path):
    wanted = wanted_functions(_server(tmp_path), INVENTORY)
    assert [w["service"] for w in wanted] == ["FuncA", "face-expression"]
    func_a, faces = wanted
    assert func_a["file"] == "FuncA.py" and func_a["path"] == str(tmp_path / "FuncA.py")
    assert func_a["constraints"] == ["edgefaas.io/profile=sonic"] and func_a["limits"] == {"memory": "128Mi"}
    assert func_a["public"] is False and func_a["envVars"] == {}
    code = (tmp_path / "FuncA.py").read_text()
    assert func_a["codeSha256"] == hashlib.sha256(code.encode()).hexdigest()
    # Public by the list unless the function says otherwise; environment values as strings.
    assert faces["public"] is True
    assert faces["envVars"] == {"LEVEL": "2", "TRITON_URLS": "http://10.77.0.11:8000,http://10.77.0.13:9000"}


def test_triton_urls_given_in_the_inventory_are_kept(tmp_path):
    host = _server(tmp_path)
    host.data["edgefaas_functions"]["face-expression"]["envVars"] = {"TRITON_URLS": "http://x:1"}
    faces = wanted_functions(host, INVENTORY)[1]
    assert faces["envVars"] == {"TRITON_URLS": "http://x:1"}


def test_a_function_without_its_file_fails_the_host(tmp_path):
    host = _server(tmp_path)
    host.data["edgefaas_functions"]["FuncZ"] = {}
    with pytest.raises(DeployError, match=r"^sonic-1: function FuncZ: .*FuncZ.py does not exist"):
        wanted_functions(host, INVENTORY)


def test_the_manifest_lists_each_function_with_its_file_and_no_local_path(tmp_path):
    wanted = wanted_functions(_server(tmp_path), INVENTORY)
    text = manifest(wanted)
    assert text.endswith("]\n") and text.startswith(
        '[\n  {\n    "service": "FuncA",\n    "file": "FuncA.py",'
    )
    entries = json.loads(text)
    assert [list(e) for e in entries] == [
        ["service", "file", "constraints", "limits", "public", "envVars"]
    ] * 2
    assert entries[1]["envVars"]["TRITON_URLS"]


def test_the_check_manifest_carries_the_code_digest_instead_of_the_file(tmp_path):
    wanted = wanted_functions(_server(tmp_path), INVENTORY)
    entries = json.loads(check_manifest(wanted))
    assert [set(e) for e in entries] == [{"service", *COMPARED}] * 2
    assert entries[0]["codeSha256"] == wanted[0]["codeSha256"]


def test_out_of_date_keeps_the_wanted_order_and_means_all_when_the_check_cannot_tell():
    wanted = [{"service": name} for name in ("FuncA", "FuncB", "FuncC")]
    assert out_of_date(wanted, ["FuncC", "FuncA"]) == ["FuncA", "FuncC"]
    assert out_of_date(wanted, ["Other"]) == []
    assert out_of_date(wanted, []) == []
    assert out_of_date(wanted, None) == ["FuncA", "FuncB", "FuncC"]
