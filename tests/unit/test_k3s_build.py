"""The k3s build's plan per architecture: environment, commands, paths and cache keys.

Nothing here compiles or reaches a network: the go commands are replaced by fakes that
record what they were asked and leave the files a real build leaves.
"""

import json
import os
from pathlib import Path

import pytest

from edgefaas.lab import artifacts
from edgefaas.lab.builds import gobuild, k3s, prerequisites
from edgefaas.lab.builds.steps import run as real_run
from edgefaas.lab.builds.steps import stream as real_stream

from .elf_fakes import fake_elf

pytestmark = pytest.mark.unit

VERSION_OUTPUT = f"k3s version {k3s.K3S_VERSION} ({k3s.K3S_COMMIT[:8]})\ngo version go1.26.8\n"

# The amd64 key a build stamps: a change here means every warm amd64 cache is rebuilt.
AMD64_K3S_KEY = {
    "module": "github.com/k3s-io/k3s",
    "revision": "v1.25.5-0.20221115215439-0dc63334c0db",
    "toolchain": "go1.26.8",
    "tags": "netgo osusergo providerless urfave_cli_no_docs sqlite_omit_load_extension apparmor seccomp",
    "ldflags": (
        "-s -w -X github.com/k3s-io/k3s/pkg/version.Version=v1.25.4+k3s1"
        " -X github.com/k3s-io/k3s/pkg/version.GitCommit=0dc63334"
        " -X k8s.io/component-base/version.gitVersion=v1.25.4+k3s1"
        " -X k8s.io/component-base/version.gitCommit=0dc63334c0db3e7b99244427615e091909fc486e"
        " -X k8s.io/component-base/version.gitTreeState=clean"
        " -X k8s.io/client-go/pkg/version.gitVersion=v1.25.4+k3s1"
        " -X k8s.io/client-go/pkg/version.gitCommit=0dc63334c0db3e7b99244427615e091909fc486e"
        " -X github.com/kubernetes-sigs/cri-tools/pkg/version.Version=v1.25.0-k3s1"
        " -extldflags '-static'"
    ),
    "replaces": "inet.af/tcpproxy=github.com/inetaf/tcpproxy@v0.0.0-20200125044825-b6bb9b5b8252",
}
AMD64_FLANNEL_KEY = {
    "package": "github.com/containernetworking/plugins/plugins/meta/flannel",
    "revision": "v0.9.1",
    "toolchain": "go1.26.8",
}


class FakeGo:
    """Stands in for steps.run and steps.stream; records calls, writes the outputs."""

    def __init__(self, version_output=VERSION_OUTPUT):
        self.runs = []
        self.streams = []
        self.version_output = version_output
        self.static = True  # what the link produces (False: a dynamic binary)

    def run(self, argv, step, env=None, cwd=None, timeout=None):
        self.runs.append({"argv": list(argv), "step": step, "env": env, "cwd": cwd, "timeout": timeout})
        return self.version_output if argv[-1] == "--version" else ""

    def stream(self, argv, step, log, progress, unit, env=None, cwd=None):
        self.streams.append({"argv": list(argv), "step": step, "env": dict(env), "cwd": cwd})
        if "-o" in argv:
            out = Path(argv[argv.index("-o") + 1])
        else:
            gopath = Path(env["GOPATH"])
            native = env["GOARCH"] == gobuild.native_arch()
            out = gopath / "bin" / ("" if native else f"linux_{env['GOARCH']}") / "flannel"
        out.parent.mkdir(parents=True, exist_ok=True)
        machine = {"amd64": 62, "arm64": 183}[env["GOARCH"]]
        out.write_bytes(fake_elf(machine, self.static, b"fake " + env["GOARCH"].encode()))
        return 1.0


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """A build machine that is amd64 with every prerequisite installed and a fake go."""
    go = FakeGo()
    asked = []
    module = tmp_path / "module"
    (module / "cmd" / "server").mkdir(parents=True)
    (module / "go.mod").write_text("module github.com/k3s-io/k3s\n")

    def missing(parts, arches):
        asked.append((list(parts), list(arches)))
        return []

    monkeypatch.setattr(gobuild, "native_arch", lambda: "amd64")
    monkeypatch.setattr(k3s, "run", go.run)
    monkeypatch.setattr(k3s, "stream", go.stream)
    monkeypatch.setattr(k3s.prerequisites, "missing", missing)
    monkeypatch.setattr(k3s, "_download_module", lambda *args: module)
    monkeypatch.setattr(k3s, "_prepare_k3s_tree", lambda work, env: None)
    monkeypatch.setenv("EDGEFAAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEFAAS_ARTIFACTS", raising=False)
    go.asked = asked
    go.cache = tmp_path / "cache"
    return go


def _stamp(path):
    return json.loads(path.with_name(f"{path.name}.build.json").read_text())


def test_paths_amd64_unchanged_arm64_suffixed(tmp_path):
    assert k3s.k3s_binary_path(tmp_path) == tmp_path / "artifacts" / "k3s-v1.25.4+k3s1" / "k3s"
    assert k3s.k3s_binary_path(tmp_path, "amd64") == k3s.k3s_binary_path(tmp_path)
    assert k3s.k3s_binary_path(tmp_path, "arm64") == tmp_path / "artifacts" / "k3s-v1.25.4+k3s1-arm64" / "k3s"
    assert k3s.flannel_cni_path(tmp_path) == tmp_path / "artifacts" / "flannel-cni-v0.9.1" / "flannel"
    flannel_arm64 = tmp_path / "artifacts" / "flannel-cni-v0.9.1-arm64" / "flannel"
    assert k3s.flannel_cni_path(tmp_path, "arm64") == flannel_arm64


def test_cache_keys_amd64_unchanged_arm64_names_its_arch():
    assert k3s.k3s_cache_key("amd64") == AMD64_K3S_KEY
    assert k3s.k3s_cache_key("arm64") == {**AMD64_K3S_KEY, "arch": "arm64"}
    assert k3s.flannel_cni_cache_key("amd64") == AMD64_FLANNEL_KEY
    assert k3s.flannel_cni_cache_key("arm64") == {**AMD64_FLANNEL_KEY, "arch": "arm64"}


def test_arm64_k3s_is_a_cgo_cross_build(fake):
    binary = k3s.build_k3s(fake.cache, log=lambda line: None, arch="arm64")

    assert binary == k3s.k3s_binary_path(fake.cache, "arm64")
    (build,) = fake.streams
    env = build["env"]
    assert env["GOARCH"] == "arm64" and env["GOOS"] == "linux"
    assert env["CGO_ENABLED"] == "1"
    assert env["CC"] == "aarch64-linux-gnu-gcc"
    assert env["PKG_CONFIG_LIBDIR"].split(":")[0] == "/usr/lib/aarch64-linux-gnu/pkgconfig"
    assert env["PKG_CONFIG_PATH"] == ""
    assert env["GOCACHE"] == str(fake.cache / "go" / "build")
    assert env["GOMODCACHE"] == str(fake.cache / "go" / "mod")
    assert build["argv"][:2] == ["go", "build"]
    assert build["argv"][-1] == "./cmd/server"
    assert build["argv"][build["argv"].index("-ldflags") + 1] == AMD64_K3S_KEY["ldflags"]
    assert "(arm64)" in build["step"]
    assert build["cwd"].name.endswith("-arm64"), "the arm64 tree must not be amd64's"
    assert _stamp(binary)["key"] == {**AMD64_K3S_KEY, "arch": "arm64"}
    assert fake.asked == [(["k3s"], ["arm64"])]


def test_arm64_version_check_runs_under_qemu_never_natively(fake):
    k3s.build_k3s(fake.cache, log=lambda line: None, arch="arm64")

    (check,) = [r for r in fake.runs if r["argv"][-1] == "--version"]
    argv = check["argv"]
    assert argv[:3] == ["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu"]
    assert Path(argv[3]).name == "k3s"
    assert check["env"]["QEMU_LD_PREFIX"] == "/usr/aarch64-linux-gnu"
    libdirs = check["env"]["LD_LIBRARY_PATH"].split(":")
    # ld.so comes from the sysroot, so libc.so.6 must too, ahead of the multiarch one.
    assert libdirs[0] == "/usr/aarch64-linux-gnu/lib"
    assert "/usr/lib/aarch64-linux-gnu" in libdirs, "libseccomp's arm64 build lives only there"
    assert check["timeout"], "an emulator that hangs must not hang the build"
    assert "(arm64)" in check["step"]


def test_amd64_k3s_build_is_native(fake):
    binary = k3s.build_k3s(fake.cache, log=lambda line: None, arch="amd64")

    assert binary == fake.cache / "artifacts" / "k3s-v1.25.4+k3s1" / "k3s"
    (build,) = fake.streams
    env = build["env"]
    assert env["GOARCH"] == "amd64" and env["CGO_ENABLED"] == "1"
    assert env.get("CC") == os.environ.get("CC")
    assert "PKG_CONFIG_LIBDIR" not in env or env["PKG_CONFIG_LIBDIR"] == os.environ.get("PKG_CONFIG_LIBDIR")
    assert build["cwd"].name == f"k3s-{k3s.K3S_PSEUDO_VERSION}"
    (check,) = [r for r in fake.runs if r["argv"][-1] == "--version"]
    program, flag = check["argv"]
    assert Path(program).name == "k3s" and flag == "--version"
    assert check["env"] is None
    assert _stamp(binary)["key"] == AMD64_K3S_KEY


def test_k3s_is_linked_static_with_gos_own_resolver(fake):
    k3s.build_k3s(fake.cache, log=lambda line: None, arch="arm64")
    (build,) = fake.streams
    argv = build["argv"]
    assert "-extldflags '-static'" in argv[argv.index("-ldflags") + 1]
    tags = argv[argv.index("-tags") + 1].split()
    # A static glibc resolving names would load the device's NSS modules (another glibc).
    assert "netgo" in tags and "netcgo" not in tags


def test_a_dynamic_k3s_is_refused_and_not_cached(fake):
    fake.static = False
    with pytest.raises(RuntimeError, match=r"k3s \(amd64\): go build linked a dynamic binary"):
        k3s.build_k3s(fake.cache, log=lambda line: None, arch="amd64")
    assert not k3s.k3s_binary_path(fake.cache, "amd64").exists()


def test_arm64_flannel_is_pure_go_cross_build(fake):
    target = k3s.build_flannel_cni(fake.cache, log=lambda line: None, arch="arm64")

    assert target == fake.cache / "artifacts" / "flannel-cni-v0.9.1-arm64" / "flannel"
    assert target.read_bytes().endswith(b"arm64")
    (install,) = fake.streams
    env = install["env"]
    assert env["GOARCH"] == "arm64" and env["CGO_ENABLED"] == "0"
    assert "GOBIN" not in env, "go install refuses GOBIN for cross-compiled binaries"
    assert "CC" not in env or env["CC"] == os.environ.get("CC")
    package = f"{k3s.FLANNEL_CNI_PACKAGE}@v0.9.1"
    assert install["argv"] == ["go", "install", "-v", "-ldflags", "-s -w", package]
    assert "(arm64)" in install["step"]
    assert _stamp(target)["key"] == {**AMD64_FLANNEL_KEY, "arch": "arm64"}


def test_amd64_flannel_lands_where_it_always_did(fake):
    target = k3s.build_flannel_cni(fake.cache, log=lambda line: None, arch="amd64")

    assert target == fake.cache / "artifacts" / "flannel-cni-v0.9.1" / "flannel"
    assert fake.streams[0]["env"]["GOARCH"] == "amd64"
    assert _stamp(target)["key"] == AMD64_FLANNEL_KEY


def test_cached_arm64_build_checks_and_builds_nothing(fake):
    k3s.build_k3s(fake.cache, log=lambda line: None, arch="arm64")
    fake.streams.clear()
    fake.asked.clear()

    lines = []
    k3s.build_k3s(fake.cache, log=lines.append, arch="arm64")
    assert fake.streams == [] and fake.asked == []
    assert any("cached" in line for line in lines)


def test_arm64_stamp_does_not_satisfy_amd64(fake):
    arm64 = k3s.build_k3s(fake.cache, log=lambda line: None, arch="arm64")
    amd64 = k3s.k3s_binary_path(fake.cache, "amd64")
    amd64.parent.mkdir(parents=True)
    amd64.write_bytes(arm64.read_bytes())
    amd64.with_name("k3s.build.json").write_text(arm64.with_name("k3s.build.json").read_text())
    assert not gobuild.is_cached(amd64, k3s.k3s_cache_key("amd64"))


def test_build_records_both_artifacts_per_arch(fake):
    k3s.build(log=lambda line: None, arch="arm64")

    k3s_entry = artifacts.lookup("k3s", "arm64")
    flannel_entry = artifacts.lookup("flannel-cni", "arm64")
    assert k3s_entry.path == str(k3s.k3s_binary_path(fake.cache, "arm64"))
    assert k3s_entry.version == k3s.K3S_VERSION and k3s_entry.arch == "arm64"
    assert flannel_entry.path == str(k3s.flannel_cni_path(fake.cache, "arm64"))
    assert artifacts.lookup("k3s", "amd64") is None


def test_build_refuses_an_unknown_arch(fake):
    with pytest.raises(artifacts.UnsupportedArch):
        k3s.build(log=lambda line: None, arch="riscv64")


def test_missing_prerequisite_names_package_and_install_command(fake, monkeypatch):
    absent = [
        prerequisites.deb("libseccomp-dev:arm64", "k3s for arm64 links arm64 libseccomp"),
        prerequisites.deb("gcc-aarch64-linux-gnu", "C cross compiler for arm64"),
    ]
    monkeypatch.setattr(k3s.prerequisites, "missing", lambda parts, arches: absent)

    with pytest.raises(RuntimeError) as raised:
        k3s.build_k3s(fake.cache, log=lambda line: None, arch="arm64")
    message = str(raised.value)
    assert "arm64" in message
    assert "libseccomp-dev:arm64" in message
    install = "dpkg --add-architecture arm64 && apt-get update && apt-get install libseccomp-dev:arm64"
    assert install in message
    assert "apt-get install gcc-aarch64-linux-gnu" in message
    assert fake.streams == [], "nothing may be compiled without the prerequisites"


def test_failed_cross_build_names_artifact_arch_and_tool_error(fake, monkeypatch, tmp_path):
    # The real stream, running a `go` that fails the way a cgo cross build does.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    go = bin_dir / "go"
    go.write_text(
        "#!/bin/sh\n"
        "echo k8s.io/apimachinery/pkg/util/runtime\n"
        "echo '# github.com/seccomp/libseccomp-golang'\n"
        "echo 'seccomp.h: No such file or directory' >&2\n"
        "exit 1\n"
    )
    go.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(k3s, "stream", real_stream)

    with pytest.raises(RuntimeError) as raised:
        k3s.build_k3s(fake.cache, log=lambda line: None, arch="arm64")
    message = str(raised.value)
    assert message.startswith("k3s (arm64) go build failed (exit 1)")
    assert "seccomp.h: No such file or directory" in message
    assert not k3s.k3s_binary_path(fake.cache, "arm64").exists()


def test_native_programs_run_as_they_are(monkeypatch):
    from edgefaas.lab.builds import steps

    monkeypatch.setattr(steps, "native_arch", lambda: "arm64")
    assert k3s.foreign_command(["/x/k3s", "--version"], "arm64") == (["/x/k3s", "--version"], None)
    argv, env = k3s.foreign_command(["/x/k3s", "--version"], "amd64")
    assert argv == ["qemu-x86_64-static", "-L", "/usr/x86_64-linux-gnu", "/x/k3s", "--version"]
    assert env["QEMU_LD_PREFIX"] == "/usr/x86_64-linux-gnu"


def test_a_command_that_hangs_is_killed_and_named():
    with pytest.raises(RuntimeError, match=r"^k3s \(arm64\) --version: no answer in 0 s, killed: sleep 30"):
        real_run(["sleep", "30"], "k3s (arm64) --version", timeout=0.2)
