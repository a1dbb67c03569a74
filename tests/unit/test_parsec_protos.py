"""The committed parsec_pb2.py: compatible with the protobuf floor, in sync with parsec.proto."""

from __future__ import annotations

import ast
import importlib.util
import re
import warnings
from pathlib import Path

import pytest

from edgefaas.parsec.protos import regenerate

pytestmark = pytest.mark.unit

PROTOS = Path(regenerate.__file__).parent
GENERATED = PROTOS / "parsec_pb2.py"


def test_gencode_does_not_demand_more_than_protobuf_5_29() -> None:
    """pyproject allows protobuf>=5.29; gencode refuses runtimes older than itself."""
    text = GENERATED.read_text()
    found = re.search(r"ValidateProtobufRuntimeVersion\(\s*\S+,\s*(\d+),\s*(\d+),\s*(\d+),", text)
    assert found, "gencode without a runtime version check: regenerate with grpcio-tools 1.71.x"
    assert tuple(int(g) for g in found.groups()) <= (5, 29, 0)


def test_generated_module_loads_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from edgefaas.parsec.protos import parsec_pb2

    assert parsec_pb2.DESCRIPTOR.name == "edgefaas/parsec/protos/parsec.proto"
    assert parsec_pb2.DESCRIPTOR.package == "edgefaas.parsec"


def _serialized_descriptor(module_path: Path) -> bytes:
    """The FileDescriptorProto bytes passed to AddSerializedFile (same for any protoc version)."""
    for node in ast.walk(ast.parse(module_path.read_text())):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "AddSerializedFile"
            and isinstance(node.args[0], ast.Constant)
        ):
            return node.args[0].value
    raise AssertionError(f"no AddSerializedFile call in {module_path}")


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools not installed")
def test_committed_module_matches_the_proto(tmp_path: Path) -> None:
    regenerate.regenerate(tmp_path)
    fresh = tmp_path / "edgefaas" / "parsec" / "protos" / "parsec_pb2.py"
    assert _serialized_descriptor(fresh) == _serialized_descriptor(GENERATED), (
        "parsec_pb2.py is stale: python -m edgefaas.parsec.protos.regenerate"
    )
