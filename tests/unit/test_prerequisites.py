"""The prerequisite table: scripts/setup installs all of it, and the builds use nothing else.

A missing install step hides on a warm machine (CI once stayed green because its machine had
libseccomp-dev from hand work): these tests fail on any machine instead.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edgefaas.lab import artifacts
from edgefaas.lab.builds import BUILDERS, prerequisites
from edgefaas.lab.builds.prerequisites import TABLE, Prerequisite

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "edgefaas" / "lab"
# Modules whose commands run on the build machine: every builder, the rootfs and the lab itself.
BUILD_MODULES = [*sorted((SRC / "builds").glob("*.py")), SRC / "rootfs.py", SRC / "lifecycle.py"]
# Commands that come with a declared toolchain rather than a Debian package.
TOOLCHAIN_COMMANDS = {"go": "go", "cargo": "cargo", "rustc": "cargo", "rustup": "cargo"}
RUNNERS = {"run", "stream", "Popen", "check_output", "check_call"}


def _setup_list() -> set[tuple[str, str]]:
    done = subprocess.run(
        ["bash", str(REPO / "scripts/setup"), "--list"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return {tuple(line.split(" ", 1)) for line in done.stdout.splitlines()}


def test_setup_installs_every_declared_package_and_rust_target():
    listed = _setup_list()
    declared = {(p.kind, p.name) for p in prerequisites.everything() if p.kind != "tool"}
    assert declared, "the table declares nothing"
    missing = sorted(f"{kind} {name}" for kind, name in declared - listed)
    assert not missing, f"declared but not installed by scripts/setup: {missing}"
    assert ("deb", "libseccomp-dev") in listed  # the package whose absence broke a cold machine


def test_every_builder_and_harness_part_declares_its_prerequisites():
    assert set(BUILDERS) <= set(TABLE), f"builders without a TABLE entry: {set(BUILDERS) - set(TABLE)}"
    assert set(prerequisites.HARNESS) <= set(TABLE)
    for part, by_arch in TABLE.items():
        assert set(by_arch) <= {"*", *artifacts.ARCHES}, f"{part}: unknown architecture key"


def test_foreign_architecture_needs_only_apply_to_cross_builds(monkeypatch):
    monkeypatch.setattr(prerequisites, "native_arch", lambda: "amd64")
    native = {p.name for p in prerequisites.needs(["k3s"], ["amd64"])}
    cross = {p.name for p in prerequisites.needs(["k3s"], ["amd64", "arm64"])}
    assert "libseccomp-dev" in native and "libseccomp-dev:arm64" not in native
    assert {"libseccomp-dev:arm64", "gcc-aarch64-linux-gnu"} <= cross


def test_missing_names_each_item_with_the_command_that_installs_it(monkeypatch):
    monkeypatch.setattr(prerequisites, "native_arch", lambda: "amd64")
    monkeypatch.setattr(prerequisites, "_installed_debs", lambda names: set(names) - {"libseccomp-dev:arm64"})
    monkeypatch.setattr(prerequisites, "_rust_targets", lambda: set())
    monkeypatch.setattr(prerequisites, "_tool_ok", lambda tool: tool != "go")
    absent = {p.name: p for p in prerequisites.missing(["k3s", "parsec"], ["amd64", "arm64"])}
    assert set(absent) == {"libseccomp-dev:arm64", "aarch64-unknown-linux-gnu", "go"}
    assert "dpkg --add-architecture arm64" in absent["libseccomp-dev:arm64"].describe()
    assert absent["aarch64-unknown-linux-gnu"].install == "rustup target add aarch64-unknown-linux-gnu"
    assert "Go >= 1.21" in absent["go"].describe()


def test_installed_debs_reads_dpkg_for_the_right_architecture(monkeypatch):
    lines = (
        "gcc amd64 installed\nlibseccomp-dev:amd64 amd64 installed\nlibseccomp-dev:arm64 arm64 config-files\n"
    )

    class Done:
        stdout = lines

    monkeypatch.setattr(prerequisites.subprocess, "run", lambda *a, **k: Done())
    monkeypatch.setattr(prerequisites, "_dpkg_arch", lambda: "amd64")
    found = prerequisites._installed_debs(["gcc", "libseccomp-dev", "libseccomp-dev:arm64", "cmake"])
    assert found == {"gcc", "libseccomp-dev"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("all", ["amd64", "arm64"]),
        ("arm64,amd64", ["amd64", "arm64"]),
        ("arm64", ["arm64"]),
        ("arm64, native", None),
    ],
)
def test_parse_arches(text, expected):
    assert prerequisites.parse_arches(text) == (expected or ["amd64", "arm64"])


@pytest.mark.parametrize("text", ["riscv64", "", "amd64,mips"])
def test_parse_arches_refuses_what_it_does_not_know(text):
    with pytest.raises(artifacts.UnsupportedArch, match="choose amd64, arm64, all or native"):
        prerequisites.parse_arches(text)


def _commands_in(path: Path) -> set[str]:
    """Commands a module runs or looks for: shutil.which("x"), argv lists given to a runner,
    tool tuples, and pkg-config --exists modules (as "pkg-config:NAME")."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            first = node.args[0] if node.args else None
            if name == "which" and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
            elif name in RUNNERS and isinstance(first, ast.List) and first.elts:
                head = first.elts[0]
                if isinstance(head, ast.Constant) and isinstance(head.value, str):
                    found.add(head.value)
                words = [e.value for e in first.elts if isinstance(e, ast.Constant)]
                if words[:2] == ["pkg-config", "--exists"] and len(words) > 2:
                    found.add(f"pkg-config:{words[2]}")
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
            targets = [getattr(t, "id", "") for t in node.targets]
            if any(t.endswith("TOOLS") for t in targets):
                found.update(e.value for e in node.value.elts if isinstance(e, ast.Constant))
    return found


def _owning_package(path: str) -> str | None:
    real = os.path.realpath(path)
    # With merged /usr, dpkg may know a file by its /bin or /sbin name.
    candidates = [real, path, *(p.removeprefix("/usr") for p in (real, path) if p.startswith("/usr/"))]
    for candidate in candidates:
        done = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if done.returncode == 0:
            return done.stdout.split(":", 1)[0].split(",")[0].strip()
    return None


def _in_minimal_debian(package: str) -> bool:
    """Essential or Priority: required, i.e. in debootstrap's minbase: never worth declaring."""
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Essential} ${Priority}", package], capture_output=True, text=True
    )
    return done.stdout.split()[:1] == ["yes"] or "required" in done.stdout.split()


def test_every_command_the_builds_use_comes_from_a_declared_prerequisite():
    declared_debs = {p.name.split(":")[0] for p in prerequisites.everything() if p.kind == "deb"}
    declared_tools = {p.name for p in prerequisites.everything() if p.kind == "tool"}
    problems = []
    for module in BUILD_MODULES:
        for command in sorted(_commands_in(module)):
            where = module.relative_to(REPO)
            if command.startswith("pkg-config:"):
                library = command.split(":", 1)[1]
                pcdir = subprocess.run(
                    ["pkg-config", "--variable=pcfiledir", library], capture_output=True, text=True
                ).stdout.strip()
                package = _owning_package(f"{pcdir}/{library}.pc") if pcdir else None
                if package is None or package not in declared_debs:
                    problems.append(f"{where}: pkg-config {library} (package {package}) is not declared")
                continue
            if TOOLCHAIN_COMMANDS.get(command) in declared_tools:
                continue
            path = shutil.which(command) or shutil.which(
                command, path=os.pathsep.join(prerequisites.TOOL_DIRS)
            )
            if path is None:
                problems.append(f"{where}: runs {command!r}, which is neither installed nor declared")
                continue
            package = _owning_package(path)
            if package is None:
                problems.append(f"{where}: runs {command!r} ({path}), which no Debian package provides")
            elif package not in declared_debs and not _in_minimal_debian(package):
                problems.append(f"{where}: runs {command!r} from package {package}, which the table lacks")
    assert not problems, "\n".join(problems)


def test_the_scan_catches_an_undeclared_library(tmp_path, monkeypatch):
    module = tmp_path / "fake_build.py"
    module.write_text('run(["pkg-config", "--exists", "libseccomp"], "step")\nshutil.which("debootstrap")\n')
    assert _commands_in(module) == {"pkg-config", "pkg-config:libseccomp", "debootstrap"}


def test_prerequisite_describe_is_one_line():
    item = Prerequisite("deb", "zstd", "packs the rootfs", "apt-get install zstd")
    assert item.describe() == "zstd (packs the rootfs): apt-get install zstd"


def test_setup_lists_no_empty_rust_target_when_only_native_is_built(tmp_path):
    done = subprocess.run(
        ["bash", str(REPO / "scripts/setup"), "--list"],
        env={**os.environ, "EDGEFAAS_BUILD_ARCHES": "native"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert all(line.split(" ", 1)[1].strip() for line in done.stdout.splitlines())
    assert not any(line.startswith("rust-target") for line in done.stdout.splitlines())


def test_the_arm64_image_builds_declare_qemu_user(monkeypatch):
    monkeypatch.setattr(prerequisites, "native_arch", lambda: "amd64")
    for part in ("pause-image", "runtime-image"):
        assert "qemu-user-static" in {p.name for p in prerequisites.needs([part], ["arm64"])}, part
        assert "qemu-user-static" not in {p.name for p in prerequisites.needs([part], ["amd64"])}, part
