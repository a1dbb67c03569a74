"""The docker-archive writer: what K3S/containerd and skopeo read, and the same bytes for the same input."""

import hashlib
import io
import json
import os
import struct
import sys
import tarfile

import pytest

from edgefaas.lab.builds import images, steps

pytestmark = pytest.mark.unit

TAG = "docker.io/edgefaas/test:1"
CONFIG = {"config": {"Entrypoint": ["/hello"], "WorkingDir": "/"}}


def _tree(root, mtime=1_600_000_000):
    (root / "sub").mkdir(parents=True)
    (root / "hello").write_bytes(b"#!/bin/sh\necho hello\n")
    (root / "hello").chmod(0o755)
    (root / "sub/data.bin").write_bytes(bytes(range(256)) * 4)
    os.link(root / "sub/data.bin", root / "sub/same.bin")
    (root / "link").symlink_to("sub/data.bin")
    os.mkfifo(root / "fifo")
    for path in (root / "sub/data.bin", root / "hello", root / "sub", root / "link"):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return root


def _members(archive):
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def test_manifest_config_and_diff_ids(tmp_path):
    out = tmp_path / "image.tar"
    image = images.write_docker_archive(out, TAG, _tree(tmp_path / "layer"), CONFIG)
    files = _members(out)
    (entry,) = json.loads(files["manifest.json"])
    assert set(entry) == {"Config", "RepoTags", "Layers"}
    assert entry["RepoTags"] == [TAG]
    config_bytes = files[entry["Config"]]
    assert entry["Config"] == f"{_sha(config_bytes)}.json"
    assert image.image_id == f"sha256:{_sha(config_bytes)}"
    config = json.loads(config_bytes)
    assert config["architecture"] == "amd64"
    assert config["os"] == "linux"
    assert config["config"] == CONFIG["config"]
    (layer_name,) = entry["Layers"]
    layer_bytes = files[layer_name]
    assert config["rootfs"] == {"type": "layers", "diff_ids": [f"sha256:{_sha(layer_bytes)}"]}
    assert image.diff_ids == (f"sha256:{_sha(layer_bytes)}",)
    assert image.size == out.stat().st_size
    assert set(files) == {"manifest.json", entry["Config"], layer_name}


def test_layer_contents(tmp_path):
    out = tmp_path / "image.tar"
    images.write_docker_archive(out, TAG, _tree(tmp_path / "layer"), CONFIG)
    files = _members(out)
    (entry,) = json.loads(files["manifest.json"])
    with tarfile.open(fileobj=io.BytesIO(files[entry["Layers"][0]])) as layer:
        members = layer.getmembers()
        by_name = {m.name: m for m in members}
        names = [m.name for m in members]
        assert names == sorted(names)  # parents before children, one fixed order
        assert set(names) == {"hello", "link", "sub", "sub/data.bin", "sub/same.bin"}  # no fifo
        assert by_name["hello"].mode == 0o755
        assert layer.extractfile("hello").read() == b"#!/bin/sh\necho hello\n"
        assert by_name["link"].issym() and by_name["link"].linkname == "sub/data.bin"
        assert by_name["sub/same.bin"].islnk() and by_name["sub/same.bin"].linkname == "sub/data.bin"
        assert by_name["sub"].isdir()
        assert all(m.uname == "" and m.gname == "" for m in members)
        assert all(isinstance(m.mtime, int) for m in members)


def test_same_input_same_bytes(tmp_path):
    first = images.write_docker_archive(tmp_path / "a.tar", TAG, _tree(tmp_path / "one"), CONFIG)
    second = images.write_docker_archive(tmp_path / "b.tar", TAG, _tree(tmp_path / "two"), CONFIG)
    assert first.image_id == second.image_id
    assert _sha((tmp_path / "a.tar").read_bytes()) == _sha((tmp_path / "b.tar").read_bytes())


def test_clamped_mtimes_hide_build_times(tmp_path):
    clamp = images.REPRODUCIBLE_MTIME
    old = images.write_docker_archive(tmp_path / "a.tar", TAG, _tree(tmp_path / "one"), CONFIG, mtime=clamp)
    new = _tree(tmp_path / "two", mtime=1_700_000_000)
    again = images.write_docker_archive(tmp_path / "b.tar", TAG, new, CONFIG, mtime=clamp)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert old.diff_ids == again.diff_ids
    unclamped = images.write_docker_archive(tmp_path / "c.tar", TAG, new, CONFIG)
    assert unclamped.diff_ids != old.diff_ids


def test_ready_tar_layers_are_used_byte_for_byte_and_in_order(tmp_path):
    base = tmp_path / "base.tar"
    images.pack_layer(_tree(tmp_path / "base"), base)
    top = tmp_path / "top"
    (top / "opt").mkdir(parents=True)
    (top / "opt/tool").write_text("tool\n")
    image = images.write_docker_archive(tmp_path / "image.tar", TAG, [base, top], CONFIG)
    files = _members(tmp_path / "image.tar")
    (entry,) = json.loads(files["manifest.json"])
    assert entry["Layers"][0] == f"{_sha(base.read_bytes())}.tar"
    assert files[entry["Layers"][0]] == base.read_bytes()
    assert image.diff_ids == tuple(f"sha256:{name.removesuffix('.tar')}" for name in entry["Layers"])
    config = json.loads(files[entry["Config"]])
    assert config["rootfs"]["diff_ids"] == list(image.diff_ids)


def test_the_same_layer_twice_is_stored_once(tmp_path):
    layer = tmp_path / "layer.tar"
    images.pack_layer(_tree(tmp_path / "tree"), layer)
    image = images.write_docker_archive(tmp_path / "image.tar", TAG, [layer, layer], CONFIG)
    assert len(image.diff_ids) == 2 and image.diff_ids[0] == image.diff_ids[1]
    with tarfile.open(tmp_path / "image.tar") as tar:
        assert sum(name.endswith(".tar") for name in tar.getnames()) == 1


def test_archive_entries_have_fixed_metadata(tmp_path):
    images.write_docker_archive(tmp_path / "image.tar", TAG, _tree(tmp_path / "layer"), CONFIG)
    fixed = (images.REPRODUCIBLE_MTIME, 0, 0, 0o644)
    with tarfile.open(tmp_path / "image.tar") as tar:
        assert all((m.mtime, m.uid, m.gid, m.mode) == fixed for m in tar.getmembers())


def test_no_layers_is_an_error(tmp_path):
    with pytest.raises(ValueError):
        images.write_docker_archive(tmp_path / "image.tar", TAG, [], CONFIG)


def test_static_elf_check(tmp_path):
    def elf(types):
        header = bytearray(64)
        header[:5] = b"\x7fELF\x02"
        struct.pack_into("<Q", header, 0x20, 64)
        struct.pack_into("<HH", header, 0x36, 56, len(types))
        return bytes(header) + b"".join(struct.pack("<I", t) + bytes(52) for t in types)

    static, dynamic = tmp_path / "static", tmp_path / "dynamic"
    static.write_bytes(elf([1, 1, 4]))  # PT_LOAD, PT_LOAD, PT_NOTE
    dynamic.write_bytes(elf([6, 3, 1]))  # PT_PHDR, PT_INTERP, PT_LOAD
    assert steps.is_static_elf(static)
    assert not steps.is_static_elf(dynamic)
    script = tmp_path / "script"
    script.write_text(f"#!{sys.executable}\n")
    assert not steps.is_static_elf(script)


def test_keys_and_references():
    assert images.runtime_key("aaaa") != images.runtime_key("bbbb")
    assert images.runtime_key("aaaa") == images.runtime_key("aaaa")
    key = images.runtime_key("aaaa")
    assert images.runtime_image_ref(key) == f"docker.io/edgefaas/runtime:{key}"
    assert images.PAUSE_IMAGE == "docker.io/edgefaas/pause:3.6"


def test_each_architecture_reads_its_own_catatonit_version(monkeypatch):
    asked = []

    def fake_run(argv, step, **kwargs):
        asked.append(argv[-1])
        return {"catatonit": "Version: 0.1.7-1+b2\n", "catatonit:arm64": "Version: 0.1.7-1+b3\n"}[argv[-1]]

    monkeypatch.setattr(images, "run", fake_run)
    assert images._catatonit_version("catatonit") == "0.1.7-1+b2"
    assert images._catatonit_version("catatonit:arm64") == "0.1.7-1+b3"
    assert asked == ["catatonit", "catatonit:arm64"]


def test_a_foreign_catatonit_apt_does_not_know_names_the_fix(monkeypatch):
    def fake_run(argv, step, **kwargs):
        raise RuntimeError(f"{step} failed (exit 100): E: No packages found")

    monkeypatch.setattr(images, "run", fake_run)
    with pytest.raises(RuntimeError, match=r"dpkg --add-architecture arm64 && apt-get update"):
        images._catatonit_version("catatonit:arm64")


def test_stale_images_of_one_architecture_leave_the_others(tmp_path):
    names = [
        "runtime-aaaa.tar",
        "runtime-bbbb.tar",
        "runtime-arm64-aaaa.tar",
        "runtime-arm64-bbbb.tar",
        "pause-3.6-cccc.tar",
        "pause-3.6-arm64-dddd.tar",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    amd64 = images.stale(tmp_path, "runtime", "amd64", tmp_path / "runtime-bbbb.tar", ".tar")
    arm64 = images.stale(tmp_path, "runtime", "arm64", tmp_path / "runtime-arm64-bbbb.tar", ".tar")
    assert [p.name for p in amd64] == ["runtime-aaaa.tar"]
    assert [p.name for p in arm64] == ["runtime-arm64-aaaa.tar"]
    assert images.stale(tmp_path, "pause-3.6", "amd64", tmp_path / "pause-3.6-cccc.tar", ".tar") == []
