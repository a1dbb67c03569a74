"""The recorded arm64 Parsec service answers the project's own client, under emulation.

edgefaas lab build --arch arm64 parsec
pytest -m arm64 tests/arm64/test_parsec_arm64.py
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edgefaas.lab.builds.steps import elf_arch, foreign_command, is_static_elf
from edgefaas.parsec import ParsecClient
from edgefaas.parsec.client import Hash
from edgefaas.parsec.errors import ParsecError
from edgefaas.perf.parsec import service_config
from tests.arm64 import support
from tests.integration.support import wait_for


@pytest.fixture(scope="module")
def service_binary(arm64_artifact) -> Path:
    return arm64_artifact("parsec-service", "parsec")


@pytest.fixture(scope="module")
def tool_binary(arm64_artifact) -> Path:
    return arm64_artifact("parsec-tool", "parsec")


@pytest.fixture(scope="module")
def endpoint(service_binary, tmp_path_factory):
    root = tmp_path_factory.mktemp("parsec-arm64")
    (root / "config.toml").write_text(service_config(root, timeout_ms=2000))
    argv, env = foreign_command([str(service_binary), "--config", str(root / "config.toml")], "arm64")
    with open(root / "service.log", "wb") as log:
        # Mbed Crypto keeps key material in the working directory.
        proc = subprocess.Popen(argv, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"unix:{root}/parsec.sock"

    def answers() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"arm64 parsec exited {proc.returncode}: {(root / 'service.log').read_text()}")
        try:
            ParsecClient(endpoint, timeout=5).ping()
        except ParsecError:
            return False
        return True

    try:
        # An emulated start is slow on a busy machine.
        wait_for(answers, 120, f"arm64 parsec to answer on {endpoint}", interval=0.2)
        yield endpoint
    finally:
        support.stop(proc)


def test_both_binaries_are_static_arm64_programs(service_binary, tool_binary):
    for binary in (service_binary, tool_binary):
        assert elf_arch(binary) == "arm64"
        assert is_static_elf(binary), f"{binary} needs a loader: it would depend on the board's glibc"


def test_parsec_tool_answers_its_version(tool_binary):
    argv, env = foreign_command([str(tool_binary), "--version"], "arm64")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "0.7.0" in done.stdout


def test_the_arm64_service_answers_the_python_client(endpoint):
    client = ParsecClient(endpoint, timeout=30)
    assert client.ping() == (1, 0)
    assert any(p.description for p in client.list_providers())


def test_the_arm64_service_signs_with_a_key_it_made(endpoint):
    client = ParsecClient(endpoint, timeout=60, app_name="arm64-test")
    client.generate_ecc_sign_key("arm64-ecc")
    try:
        digest = bytes(range(32))
        signature = client.sign_hash("arm64-ecc", digest)
        client.verify_hash("arm64-ecc", digest, signature)
        assert client.hash_compute(b"abc", Hash.SHA_256).hex().startswith("ba7816bf")
    finally:
        client.destroy_key("arm64-ecc")
