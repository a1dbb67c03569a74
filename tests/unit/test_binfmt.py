"""binfmt_misc: register only what is absent, remove only what was registered here."""

from __future__ import annotations

import pytest

from edgefaas.lab import binfmt


class FakeKernel:
    """A binfmt_misc directory: writing a rule to `register` makes an enabled entry."""

    def __init__(self, root, mounted: bool):
        self.root = root
        self.mounted = mounted
        self.mounts = self.umounts = 0
        if mounted:
            self.mount()
            self.mounts = 0

    def mount(self):
        self.root.mkdir(exist_ok=True)
        (self.root / "register").write_text("")
        (self.root / "status").write_text("enabled\n")
        self.mounted = True
        self.mounts += 1

    def umount(self):
        for entry in self.root.iterdir():
            entry.unlink()
        self.mounted = False
        self.umounts += 1

    def register(self, rule: str):
        name, interpreter = rule.split(":")[1], rule.split(":")[-2]
        (self.root / name).write_text(f"enabled\ninterpreter {interpreter}\nflags: F\n")

    def add_foreign(self, name: str, interpreter: str):
        (self.root / name).write_text(f"enabled\ninterpreter {interpreter}\n")


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    def make(mounted: bool = True) -> FakeKernel:
        fake = FakeKernel(tmp_path / "binfmt_misc", mounted)
        monkeypatch.setattr(binfmt, "MOUNT", fake.root)
        monkeypatch.setattr(binfmt, "_mount", fake.mount)
        monkeypatch.setattr(binfmt, "_umount", fake.umount)
        monkeypatch.setattr(binfmt, "_register", fake.register)
        monkeypatch.setattr(binfmt, "_unregister", lambda name: (fake.root / name).unlink())
        monkeypatch.setattr(binfmt.os, "geteuid", lambda: 0)
        monkeypatch.setattr(binfmt, "native_arch", lambda: "amd64")
        rules = tmp_path / "rules"
        rules.mkdir(exist_ok=True)
        (rules / "qemu-aarch64.conf").write_text(
            ":qemu-aarch64:M::\\x7fELF:\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OPF\n"
        )
        monkeypatch.setattr(binfmt, "RULES", rules)
        monkeypatch.setenv("EDGEFAAS_STATE", str(tmp_path / "state"))
        return fake

    return make


def test_registers_when_absent_and_removes_with_the_last_holder(kernel):
    fake = kernel(mounted=False)
    binfmt.acquire("lab:a", "arm64", log=lambda m: None)
    binfmt.acquire("build:1", "arm64", log=lambda m: None)
    assert (fake.root / "qemu-aarch64").exists() and fake.mounts == 1

    binfmt.release("lab:a", log=lambda m: None)
    assert (fake.root / "qemu-aarch64").exists(), "removed while a build still needed it"
    binfmt.release("build:1", log=lambda m: None)
    assert not fake.mounted and fake.umounts == 1
    assert not (binfmt._state_file()).exists()


def test_a_handler_someone_else_registered_is_used_and_kept(kernel):
    fake = kernel(mounted=True)
    fake.add_foreign("qemu-aarch64", "/usr/bin/qemu-aarch64-static")
    with binfmt.emulation("test:1", "arm64", log=lambda m: None):
        pass
    assert (fake.root / "qemu-aarch64").exists() and fake.mounted and fake.umounts == 0


def test_binfmt_is_left_mounted_when_others_registered_meanwhile(kernel):
    fake = kernel(mounted=False)
    binfmt.acquire("lab:a", "arm64", log=lambda m: None)
    fake.add_foreign("python3.11", "/usr/bin/python3.11")
    binfmt.release("lab:a", log=lambda m: None)
    assert not (fake.root / "qemu-aarch64").exists()
    assert (fake.root / "python3.11").exists() and fake.umounts == 0


def test_the_native_architecture_needs_nothing(kernel):
    fake = kernel(mounted=False)
    binfmt.acquire("lab:a", "amd64")
    assert fake.mounts == 0 and not binfmt._state_file().exists()


def test_a_missing_rule_names_the_package(kernel, tmp_path, monkeypatch):
    kernel(mounted=True)
    monkeypatch.setattr(binfmt, "RULES", tmp_path / "nowhere")
    with pytest.raises(binfmt.BinfmtError, match="install Debian's qemu-user-static"):
        binfmt.acquire("lab:a", "arm64")


def test_a_failed_registration_leaves_nothing_mounted(kernel, tmp_path, monkeypatch):
    fake = kernel(mounted=False)
    monkeypatch.setattr(binfmt, "RULES", tmp_path / "nowhere")
    with pytest.raises(binfmt.BinfmtError):
        binfmt.acquire("build:1", "arm64", log=lambda m: None)
    assert fake.mounts == 1 and fake.umounts == 1 and not fake.mounted
    assert not binfmt._state_file().exists()


def test_a_handler_that_does_not_come_up_is_removed_again(kernel, monkeypatch):
    fake = kernel(mounted=True)

    def register_disabled(rule):
        fake.register(rule)
        entry = fake.root / rule.split(":")[1]
        entry.write_text(entry.read_text().replace("enabled", "disabled"))

    monkeypatch.setattr(binfmt, "_register", register_disabled)
    with pytest.raises(binfmt.BinfmtError, match="no enabled handler"):
        binfmt.acquire("build:1", "arm64", log=lambda m: None)
    assert not (fake.root / "qemu-aarch64").exists() and fake.mounted and fake.umounts == 0
    assert not binfmt._state_file().exists()


def test_the_rule_lets_setuid_programs_keep_their_credentials(kernel):
    kernel(mounted=True)
    rule = binfmt._rule("arm64")
    assert rule.startswith(":qemu-aarch64:M::") and rule.rsplit(":", 1)[1] == "OPFC"
