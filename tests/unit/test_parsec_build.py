"""The Parsec build's plan per architecture: environment, cargo commands, paths and cache keys.

Nothing here compiles or reaches a network: cargo and rustc are replaced by fakes that
record what they were asked and leave the files `cargo install` leaves, with an ELF header
of the architecture cargo was asked for (the build checks it).
"""

import json
import os
from pathlib import Path

import pytest

from edgefaas.lab import artifacts
from edgefaas.lab.builds import parsec, prerequisites
from edgefaas.lab.builds.steps import stream as real_stream

from .elf_fakes import fake_elf

pytestmark = pytest.mark.unit

RUSTC = "rustc 1.95.0 (59807616e 2026-04-14)"
FEATURES = ["mbed-crypto-provider", "direct-authenticator"]
# What a build stamps: a change here means every warm cache rebuilds parsec (15 minutes on
# a CI machine). Stamps from before static linking lack "target" and "static".
DYNAMIC_SERVICE_KEY = {"crate": "parsec-service", "version": "1.5.0", "features": FEATURES, "rustc": RUSTC}
DYNAMIC_TOOL_KEY = {"crate": "parsec-tool", "version": "0.7.0", "features": [], "rustc": RUSTC}
AMD64_TARGET = "x86_64-unknown-linux-gnu"
ARM64_TARGET = "aarch64-unknown-linux-gnu"
AMD64_SERVICE_KEY = {**DYNAMIC_SERVICE_KEY, "target": AMD64_TARGET, "static": True}
AMD64_TOOL_KEY = {**DYNAMIC_TOOL_KEY, "target": AMD64_TARGET, "static": True}
STATIC_RUSTFLAGS = "-C target-feature=+crt-static"
ARM64_ENV = {
    "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER": "aarch64-linux-gnu-gcc",
    "CC_aarch64_unknown_linux_gnu": "aarch64-linux-gnu-gcc",
    "AR_aarch64_unknown_linux_gnu": "aarch64-linux-gnu-ar",
    "BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu": (
        "--sysroot=/usr/aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include"
    ),
    "PKG_CONFIG_ALLOW_CROSS": "1",
}
E_MACHINE = {"x86_64-unknown-linux-gnu": 62, ARM64_TARGET: 183}
BINARIES = {"parsec-service": "parsec", "parsec-tool": "parsec-tool"}


class FakeCargo:
    """Stands in for steps.run (rustc --version) and steps.stream (cargo install)."""

    def __init__(self, host_triple="x86_64-unknown-linux-gnu"):
        self.runs = []
        self.streams = []
        self.rustc = RUSTC
        self.host_triple = host_triple
        self.built_for = None  # force the ELF machine cargo "builds" (None: what was asked)
        self.static = True  # what cargo links (False: a dynamic binary)

    def run(self, argv, step, env=None, cwd=None, timeout=None):
        self.runs.append(list(argv))
        return self.rustc + "\n"

    def stream(self, argv, step, log, progress, unit, env=None, cwd=None):
        self.streams.append({"argv": list(argv), "step": step, "env": dict(env)})
        root = Path(argv[argv.index("--root") + 1])
        triple = argv[argv.index("--target") + 1] if "--target" in argv else self.host_triple
        binary = root / "bin" / BINARIES[argv[2]]
        binary.parent.mkdir(parents=True, exist_ok=True)
        machine = self.built_for or E_MACHINE[triple]
        binary.write_bytes(fake_elf(machine, self.static, b"fake " + argv[2].encode()))
        return 1.0


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """An amd64 build machine with every prerequisite installed, a fake cargo and a private cache."""
    cargo = FakeCargo()
    asked = []

    def missing(parts, arches):
        asked.append((list(parts), list(arches)))
        return []

    monkeypatch.setattr(artifacts, "native_arch", lambda: "amd64")
    monkeypatch.setattr(parsec, "run", cargo.run)
    monkeypatch.setattr(parsec, "stream", cargo.stream)
    monkeypatch.setattr(parsec.prerequisites, "missing", missing)
    monkeypatch.setenv("EDGEFAAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEFAAS_ARTIFACTS", raising=False)
    cargo.asked = asked
    cargo.cache = tmp_path / "cache"
    return cargo


def _quiet(line):
    pass


def _stamp(binary: Path) -> dict:
    return json.loads((binary.parent.parent / "build-info.json").read_text())


def _by_crate(streams):
    return {s["argv"][2]: s for s in streams}


def test_paths_amd64_unchanged_arm64_suffixed(fake):
    artifacts_dir = fake.cache / "artifacts"
    assert parsec.install_root("parsec-service", "1.5.0", "amd64") == artifacts_dir / "parsec-service-1.5.0"
    assert (
        parsec.install_root("parsec-service", "1.5.0", "arm64")
        == artifacts_dir / "parsec-service-1.5.0-arm64"
    )
    assert parsec.install_root("parsec-tool", "0.7.0", "arm64") == artifacts_dir / "parsec-tool-0.7.0-arm64"


def test_rust_targets_per_arch():
    assert parsec.rust_target("arm64") == ARM64_TARGET
    assert parsec.rust_target("amd64") == "x86_64-unknown-linux-gnu"


def test_cross_env_for_arm64_and_none_for_the_native_arch(fake):
    assert parsec.cross_env("arm64") == ARM64_ENV
    assert parsec.cross_env("amd64") == {}


def test_arm64_is_a_cargo_cross_build_into_its_own_paths(fake):
    built = parsec.build(log=_quiet, arch="arm64")

    assert fake.asked == [(["parsec"], ["arm64"])]
    streams = _by_crate(fake.streams)
    assert list(streams) == ["parsec-service", "parsec-tool"]
    service_root = fake.cache / "artifacts" / "parsec-service-1.5.0-arm64"
    assert streams["parsec-service"]["argv"] == [
        "cargo", "install", "parsec-service", "--version", "1.5.0", "--locked", "--force",
        "--root", str(service_root),
        "--features", "mbed-crypto-provider,direct-authenticator",
        "--target-dir", str(fake.cache / "cargo-target" / "parsec-service-arm64"),
        "--target", ARM64_TARGET,
    ]  # fmt: skip
    tool_argv = streams["parsec-tool"]["argv"]
    assert tool_argv[tool_argv.index("--root") + 1] == str(
        fake.cache / "artifacts" / "parsec-tool-0.7.0-arm64"
    )
    assert "--features" not in tool_argv
    assert tool_argv[tool_argv.index("--target-dir") + 1] == str(
        fake.cache / "cargo-target" / "parsec-tool-arm64"
    )
    assert tool_argv[tool_argv.index("--target") + 1] == ARM64_TARGET
    for crate, call in streams.items():
        assert call["step"] == f"{crate} (arm64)"
        env = call["env"]
        assert {k: env[k] for k in ARM64_ENV} == ARM64_ENV
        assert env["PATH"] == os.environ["PATH"], "cargo must still find rustup's toolchain"

    service, tool = built
    assert (service.name, service.arch, service.version) == ("parsec-service", "arm64", "1.5.0")
    assert service.path == str(service_root / "bin" / "parsec")
    assert (tool.name, tool.arch, tool.version) == ("parsec-tool", "arm64", "0.7.0")
    assert artifacts.lookup("parsec-service", "arm64") == service
    assert artifacts.lookup("parsec-tool", "arm64") == tool
    assert artifacts.lookup("parsec-service", "amd64") is None
    assert _stamp(Path(service.path)) == {**AMD64_SERVICE_KEY, "target": ARM64_TARGET}
    assert _stamp(Path(tool.path)) == {**AMD64_TOOL_KEY, "target": ARM64_TARGET}


def test_binaries_are_static_for_the_target_only(fake):
    parsec.build(log=_quiet, arch="arm64")
    for call in fake.streams:
        env = call["env"]
        assert env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS"] == STATIC_RUSTFLAGS
        # Plain RUSTFLAGS would reach build scripts and proc-macros, which cannot be static.
        assert env.get("RUSTFLAGS") == os.environ.get("RUSTFLAGS")


def test_a_dynamic_binary_is_refused_and_not_stamped(fake):
    fake.static = False  # the crt-static flag did not reach the link

    with pytest.raises(RuntimeError, match=r"parsec-service \(amd64\): cargo linked .*/parsec dynamically"):
        parsec.build(log=_quiet, arch="amd64")
    assert not (fake.cache / "artifacts" / "parsec-service-1.5.0" / "build-info.json").exists()
    assert artifacts.lookup("parsec-service", "amd64") is None


def test_amd64_is_native_and_keeps_its_paths(fake):
    service, tool = parsec.build(log=_quiet, arch="amd64")

    assert fake.asked == [(["parsec"], ["amd64"])]
    streams = _by_crate(fake.streams)
    for crate, call in streams.items():
        argv = call["argv"]
        # Named even though native, so crt-static stays off the build scripts.
        assert argv[argv.index("--target") + 1] == AMD64_TARGET
        assert call["env"]["CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS"] == STATIC_RUSTFLAGS
        assert argv[argv.index("--target-dir") + 1] == str(fake.cache / "cargo-target" / crate)
        assert call["step"] == f"{crate} (amd64)"
        for name in ARM64_ENV:
            assert call["env"].get(name) == os.environ.get(name)
    assert service.path == str(fake.cache / "artifacts" / "parsec-service-1.5.0" / "bin" / "parsec")
    assert tool.path == str(fake.cache / "artifacts" / "parsec-tool-0.7.0" / "bin" / "parsec-tool")
    assert service.arch == tool.arch == "amd64"
    assert _stamp(Path(service.path)) == AMD64_SERVICE_KEY
    assert _stamp(Path(tool.path)) == AMD64_TOOL_KEY


def _warm(fake, service_key, tool_key):
    for crate, version, key in (("parsec-service", "1.5.0", service_key), ("parsec-tool", "0.7.0", tool_key)):
        root = fake.cache / "artifacts" / f"{crate}-{version}"
        (root / "bin").mkdir(parents=True)
        (root / "bin" / BINARIES[crate]).write_bytes(fake_elf(62))
        (root / "build-info.json").write_text(json.dumps(key, indent=2) + "\n")


def test_a_warm_amd64_cache_is_reused(fake):
    _warm(fake, AMD64_SERVICE_KEY, AMD64_TOOL_KEY)
    parsec.build(log=_quiet, arch="amd64")
    assert fake.streams == []


def test_a_dynamic_build_from_before_is_rebuilt(fake):
    _warm(fake, DYNAMIC_SERVICE_KEY, DYNAMIC_TOOL_KEY)
    parsec.build(log=_quiet, arch="amd64")
    assert list(_by_crate(fake.streams)) == ["parsec-service", "parsec-tool"]


def test_a_cached_arm64_build_runs_no_cargo_until_the_toolchain_changes(fake):
    parsec.build(log=_quiet, arch="arm64")
    fake.streams.clear()

    parsec.build(log=_quiet, arch="arm64")
    assert fake.streams == []

    fake.rustc = "rustc 1.96.0 (0000000 2026-06-01)"
    parsec.build(log=_quiet, arch="arm64")
    assert [s["argv"][2] for s in fake.streams] == ["parsec-service", "parsec-tool"]


def test_an_amd64_stamp_does_not_satisfy_arm64(fake):
    # Same version, features and toolchain: only the target tells the builds apart.
    root = fake.cache / "artifacts" / "parsec-service-1.5.0-arm64"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "parsec").write_bytes(fake_elf(62))
    (root / "build-info.json").write_text(json.dumps(AMD64_SERVICE_KEY))

    parsec.build(log=_quiet, arch="arm64")
    assert "parsec-service" in _by_crate(fake.streams)


def test_a_binary_of_the_wrong_arch_is_refused_and_not_stamped(fake):
    fake.built_for = 62  # cargo ignored --target

    with pytest.raises(
        RuntimeError, match=r"parsec-service \(arm64\): cargo built .*/parsec for amd64, not arm64"
    ):
        parsec.build(log=_quiet, arch="arm64")
    assert not (fake.cache / "artifacts" / "parsec-service-1.5.0-arm64" / "build-info.json").exists()
    assert artifacts.lookup("parsec-service", "arm64") is None


def test_native_arm64_machine_builds_arm64_without_cross_settings(fake, monkeypatch):
    monkeypatch.setattr(artifacts, "native_arch", lambda: "arm64")
    fake.host_triple = ARM64_TARGET

    service, _ = parsec.build(log=_quiet, arch="arm64")
    call = _by_crate(fake.streams)["parsec-service"]
    assert call["argv"][call["argv"].index("--target") + 1] == ARM64_TARGET
    for name in ARM64_ENV:
        assert call["env"].get(name) == os.environ.get(name)
    assert service.path == str(fake.cache / "artifacts" / "parsec-service-1.5.0-arm64" / "bin" / "parsec")


def test_missing_prerequisites_are_named_with_their_install_commands(fake, monkeypatch):
    table = {p.name: p for p in prerequisites.TABLE["parsec"]["arm64"]}
    absent = [table[ARM64_TARGET], table["gcc-aarch64-linux-gnu"]]
    monkeypatch.setattr(parsec.prerequisites, "missing", lambda parts, arches: absent)

    with pytest.raises(RuntimeError) as raised:
        parsec.build(log=_quiet, arch="arm64")
    message = str(raised.value)
    assert message.startswith("parsec (arm64): missing prerequisites")
    assert f"{ARM64_TARGET} (Rust's arm64 standard library): rustup target add {ARM64_TARGET}" in message
    assert (
        "gcc-aarch64-linux-gnu (C cross compiler for arm64): apt-get install gcc-aarch64-linux-gnu" in message
    )
    assert fake.streams == [] and fake.runs == [], "nothing may run without the prerequisites"


def test_the_table_declares_what_the_arm64_cross_build_uses(monkeypatch):
    monkeypatch.setattr(prerequisites, "native_arch", lambda: "amd64")
    names = {p.name for p in prerequisites.needs(["parsec"], ["arm64"])}
    assert {
        "gcc-aarch64-linux-gnu",
        "libc6-dev-arm64-cross",
        ARM64_TARGET,
        "cmake",
        "clang",
        "cargo",
    } <= names
    assert ARM64_TARGET not in {p.name for p in prerequisites.needs(["parsec"], ["amd64"])}


def test_an_unknown_arch_is_refused_before_anything_runs(fake):
    with pytest.raises(artifacts.UnsupportedArch):
        parsec.build(log=_quiet, arch="riscv64")
    assert fake.asked == [] and fake.streams == []


def test_failed_cross_build_names_artifact_arch_and_cargos_error(fake, monkeypatch, tmp_path):
    # The real stream, running a cargo that fails the way a cross link without the cross gcc does.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cargo = bin_dir / "cargo"
    cargo.write_text(
        "#!/bin/sh\n"
        "echo '   Compiling mbedtls-sys-auto v2.28.7'\n"
        "echo '   Compiling parsec-service v1.5.0'\n"
        "echo 'error: linker `aarch64-linux-gnu-gcc` not found'\n"
        "echo 'error: could not compile `parsec-service` (bin \"parsec\") due to 1 previous error'\n"
        "exit 101\n"
    )
    cargo.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(parsec, "stream", real_stream)

    with pytest.raises(RuntimeError) as raised:
        parsec.build(log=_quiet, arch="arm64")
    message = str(raised.value)
    assert message.startswith("parsec-service (arm64) failed (exit 101)")
    assert "error: linker `aarch64-linux-gnu-gcc` not found" in message
    assert "could not compile `parsec-service`" in message
    assert not (fake.cache / "artifacts" / "parsec-service-1.5.0-arm64" / "build-info.json").exists()
    assert artifacts.lookup("parsec-service", "arm64") is None
