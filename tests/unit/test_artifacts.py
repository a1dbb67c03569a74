"""Artifacts per architecture: the manifest, how deploys resolve one for a device, overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyinfra.api.exceptions import DeployError

from edgefaas.deploy import artifact_source
from edgefaas.deploy import artifacts as deploy_artifacts
from edgefaas.deploy.artifact_source import ArtifactError, resolve
from edgefaas.lab import artifacts


@pytest.fixture
def artifact_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EDGEFAAS_ARTIFACTS", str(tmp_path))
    return tmp_path


def _built(directory: Path, name: str, content: bytes) -> Path:
    path = directory / name
    path.write_bytes(content)
    return path


def test_arch_names_follow_debian():
    assert artifacts.arch_of("x86_64") == "amd64"
    assert artifacts.arch_of("aarch64\n") == "arm64"
    with pytest.raises(
        artifacts.UnsupportedArch, match=r"'riscv64' is not supported \(supported: amd64, arm64\)"
    ):
        artifacts.arch_of("riscv64")


def test_one_entry_per_name_and_arch(artifact_dir):
    amd = artifacts.record("k3s", "v1", _built(artifact_dir, "k3s-amd64", b"x86"), arch="amd64")
    arm = artifacts.record("k3s", "v1", _built(artifact_dir, "k3s-arm64", b"arm"), arch="arm64")
    again = artifacts.record("k3s", "v2", _built(artifact_dir, "k3s-arm64-2", b"arm2"), arch="arm64")

    manifest = artifacts.load_manifest()
    assert set(manifest) == {"k3s/amd64", "k3s/arm64"}
    assert manifest["k3s/amd64"] == amd
    assert manifest["k3s/arm64"] == again != arm
    assert artifacts.lookup("k3s", "arm64").sha256 == artifacts.sha256_file(artifact_dir / "k3s-arm64-2")
    with pytest.raises(artifacts.UnsupportedArch):
        artifacts.record("k3s", "v1", artifact_dir / "k3s-amd64", arch="mips")


def test_a_manifest_from_before_architectures_reads_as_amd64(artifact_dir):
    path = _built(artifact_dir, "parsec", b"svc")
    legacy = {
        "parsec-service": {"name": "parsec-service", "version": "1.5.0", "path": str(path), "sha256": "ab"}
    }
    artifacts.manifest_path().write_text(json.dumps(legacy))

    entry = artifacts.lookup("parsec-service", "amd64")
    assert entry is not None and entry.arch == "amd64" and entry.path == str(path)
    assert artifacts.lookup("parsec-service", "arm64") is None


def test_resolve_picks_the_devices_architecture(artifact_dir):
    artifacts.record("k3s", "v1", _built(artifact_dir, "a", b"x86"), arch="amd64")
    artifacts.record("k3s", "v1", _built(artifact_dir, "b", b"arm"), arch="arm64")
    data = {"artifact_dir": str(artifact_dir)}

    assert resolve(data, "k3s", "arm64").path == str(artifact_dir / "b")
    assert resolve(data, "k3s", "amd64").path == str(artifact_dir / "a")


def test_resolve_names_the_missing_architecture_and_the_fix(artifact_dir):
    artifacts.record("parsec-tool", "0.7.0", _built(artifact_dir, "t", b"x86"), arch="amd64")
    with pytest.raises(ArtifactError) as err:
        resolve({"artifact_dir": str(artifact_dir)}, "parsec-tool", "arm64")
    message = str(err.value)
    assert "no arm64 build of artifact 'parsec-tool'" in message
    assert "built for: amd64" in message
    assert "edgefaas lab build --arch arm64" in message


def test_resolve_refuses_a_file_that_changed_after_the_build(artifact_dir):
    path = _built(artifact_dir, "k", b"built")
    artifacts.record("k3s", "v1", path, arch="arm64")
    path.write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match=r"'k3s' \(arm64\): .* has sha256 .* the manifest says"):
        resolve({"artifact_dir": str(artifact_dir)}, "k3s", "arm64")


def test_url_overrides_for_every_arch_or_per_arch():
    flat = {"artifacts": {"k3s": {"url": "http://mirror/k3s", "sha256": "11"}}}
    assert resolve(flat, "k3s", "arm64").url == "http://mirror/k3s"

    per_arch = {
        "artifacts": {
            "k3s": {
                "arm64": {"url": "http://mirror/k3s-arm64", "sha256": "22"},
                "amd64": {"url": "http://mirror/k3s", "sha256": "33"},
            }
        }
    }
    chosen = resolve(per_arch, "k3s", "arm64")
    assert (chosen.url, chosen.sha256, chosen.arch) == ("http://mirror/k3s-arm64", "22", "arm64")

    only_amd = {"artifacts": {"k3s": {"amd64": {"url": "http://mirror/k3s", "sha256": "33"}}}}
    with pytest.raises(ArtifactError, match=r"artifacts\['k3s'\] has no 'arm64' entry"):
        resolve(only_amd, "k3s", "arm64")
    broken = {"artifacts": {"k3s": {"arm64": {"url": "http://mirror/k3s-arm64"}}}}
    with pytest.raises(ArtifactError, match=r"artifacts\['k3s'\]\['arm64'\] needs both 'url' and 'sha256'"):
        resolve(broken, "k3s", "arm64")


class _FakeHost:
    def __init__(self, name: str, machine: str, data: dict):
        self.name, self.machine, self.data = name, machine, data

    def get_fact(self, fact, **kwargs):
        return self.machine


def test_a_deploy_fails_the_device_naming_device_artifact_and_arch(artifact_dir, monkeypatch):
    artifacts.record("k3s", "v1", _built(artifact_dir, "k", b"x86"), arch="amd64")
    data = {"artifact_dir": str(artifact_dir)}

    monkeypatch.setattr(deploy_artifacts, "host", _FakeHost("jetson-1", "aarch64", data))
    with pytest.raises(DeployError, match=r"^jetson-1: no arm64 build of artifact 'k3s'"):
        deploy_artifacts.require("k3s")

    monkeypatch.setattr(deploy_artifacts, "host", _FakeHost("sonic-1", "x86_64", data))
    assert deploy_artifacts.require("k3s")["k3s"].arch == "amd64"

    monkeypatch.setattr(deploy_artifacts, "host", _FakeHost("odd-1", "ppc64le", data))
    with pytest.raises(DeployError, match=r"^odd-1: architecture 'ppc64le' is not supported"):
        deploy_artifacts.artifact("k3s")


def test_checksums_are_cached_per_file_state(artifact_dir):
    path = _built(artifact_dir, "w", b"one")
    artifacts.record("edgefaas-wheelhouse", "k", path, arch="amd64")
    data = {"artifact_dir": str(artifact_dir)}
    artifact_source._checksum.cache_clear()
    resolve(data, "edgefaas-wheelhouse", "amd64")
    resolve(data, "edgefaas-wheelhouse", "amd64")
    assert artifact_source._checksum.cache_info().hits >= 1


def test_a_build_time_survives_re_recording_the_same_file_only(artifact_dir, monkeypatch):
    path = _built(artifact_dir, "k", b"one")
    clock = iter([1000.0, 1912.34])
    monkeypatch.setattr(artifacts.time, "monotonic", lambda: next(clock))
    with artifacts.timed_build():
        artifacts.record("k3s", "v1", path, arch="arm64")
    assert artifacts.lookup("k3s", "arm64").build_seconds == 912.3

    artifacts.record("k3s", "v1", path, arch="arm64")  # a cached build records again
    assert artifacts.lookup("k3s", "arm64").build_seconds == 912.3

    path.write_bytes(b"two")  # a new build: its time is not the old one's
    artifacts.record("k3s", "v1", path, arch="arm64")
    assert artifacts.lookup("k3s", "arm64").build_seconds is None


def test_lab_artifacts_compares_architectures_side_by_side(artifact_dir, monkeypatch):
    from click.testing import CliRunner

    from edgefaas.cli import main

    artifacts.record("parsec-tool", "0.7.0", _built(artifact_dir, "a", b"x" * 4_000_000), arch="amd64")
    clock = iter([0.0, 300.0])
    monkeypatch.setattr(artifacts.time, "monotonic", lambda: next(clock))
    with artifacts.timed_build():
        artifacts.record("parsec-tool", "0.7.0", _built(artifact_dir, "b", b"y" * 5_000_000), arch="arm64")
    artifacts.record("k3s", "v1", _built(artifact_dir, "c", b"z"), arch="amd64")

    out = CliRunner().invoke(main, ["lab", "artifacts", "--compare"]).output
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "4.0 MB, -" in rows["parsec-tool"] and "5.0 MB, 300 s" in rows["parsec-tool"]
    assert rows["parsec-tool"].endswith("1.25x")
    assert "not built" in rows["k3s"]

    listing = CliRunner().invoke(main, ["lab", "artifacts"]).output.splitlines()
    assert listing[-1].split("\t")[:5] == ["parsec-tool", "arm64", "0.7.0", "5000000", "300.0"]


class _Uploaded:
    def __init__(self, changed: bool):
        self.changed = changed

    def did_change(self) -> bool:
        return self.changed


@pytest.mark.parametrize(
    ("archive", "installed", "uploaded", "runs"),
    [
        ("/opt/x/bundle.tar.gz", None, False, True),  # never unpacked, or cut short
        ("/opt/x/server.tar", "old", False, True),  # another artifact
        ("/opt/x/server.tar", "abc", True, True),  # the same sha, uploaded again
        ("/opt/x/server.tar", "abc", False, False),  # complete and current
    ],
)
def test_an_artifact_is_unpacked_aside_and_swapped_in_only_when_needed(
    monkeypatch, archive, installed, uploaded, runs
):
    from edgefaas.deploy.artifact_source import ArtifactSource

    asked, shells = [], []

    class Host(_FakeHost):
        def get_fact(self, fact, **kwargs):
            asked.append((fact.__name__, kwargs))
            return installed

    monkeypatch.setattr(deploy_artifacts, "host", Host("sonic-1", "x86_64", {}))
    monkeypatch.setattr(deploy_artifacts.server, "shell", lambda **kwargs: shells.append(kwargs))
    source = ArtifactSource(name="tritonserver", arch="amd64", version="2", sha256="abc", path="/a/b.tar")
    deploy_artifacts.unpack(
        archive, "/opt/x/home", source, "tritonserver 2", _Uploaded(uploaded), "bin/tritonserver"
    )

    assert asked == [("UnpackedArtifact", {"home": "/opt/x/home", "binary": "bin/tritonserver"})]
    (shell,) = shells
    flag = "-xzf" if archive.endswith(".gz") else "-xf"
    assert shell["commands"] == [
        "rm -rf /opt/x/home.new && mkdir -p /opt/x/home.new",
        f"tar {flag} {archive} -C /opt/x/home.new",
        "echo abc > /opt/x/home.new/.artifact-sha256",
        "rm -rf /opt/x/home && mv /opt/x/home.new /opt/x/home",
    ]
    assert shell["_if"]() is runs
