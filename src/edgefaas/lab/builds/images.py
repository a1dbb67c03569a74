"""Container images for K3S made without a registry or a Docker engine.

The lab devices (and the air-gapped edge sites this blueprint targets) have no registry,
so every image a pod uses is carried as a tarball that K3S imports from
/var/lib/rancher/k3s/agent/images/*.tar when it starts. Two are needed:

- the pod sandbox ("pause") image, `docker.io/edgefaas/pause:3.6`: Debian's static
  `catatonit` in pause mode, standing in for `rancher/mirrored-pause:3.6`
  (K3S: `--pause-image docker.io/edgefaas/pause:3.6`);
- the function runtime image, `docker.io/edgefaas/runtime:<key>`: Debian bookworm
  minbase with Python and a venv holding the project's wheelhouse, so pods run
  `python3 -m edgefaas.runtime` with `imagePullPolicy: Never`.

Both are written in the `docker save` format (docker-archive) by `write_docker_archive`,
which is deterministic: the same input gives the same bytes, hence the same image ID, so
re-running a deploy changes nothing on the devices. The runtime image has two layers,
the Debian base and the venv, so a new wheelhouse only replaces the small venv layer and
containerd keeps sharing the base.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefaas.lab import artifacts
from edgefaas.lab.builds.samples import PHOTOS, sample_photos
from edgefaas.lab.builds.steps import Log, elf_arch, foreign_command, is_static_elf, run
from edgefaas.lab.paths import cache_dir
from edgefaas.lab.rootfs import debian_mirror

PAUSE_IMAGE = "docker.io/edgefaas/pause:3.6"
PAUSE_ENTRYPOINT = ("/catatonit", "-P")
# Upstream pause 3.6 runs as 65535:65535 too; numeric, so the image needs no /etc/passwd.
PAUSE_USER = "65535:65535"
RUNTIME_REPO = "docker.io/edgefaas/runtime"

SUITE = "bookworm"
# libpython3.11: Triton's Python-backend stub links it when Triton runs as a K3S workload.
RUNTIME_PACKAGES = ("python3", "python3-venv", "ca-certificates", "libpython3.11")
VENV = "/opt/edgefaas/venv"
APP_USER, APP_UID = "app", 10001
RUNTIME_PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What a pod runs when its spec names no command: configured by EDGEFAAS_CODE/EDGEFAAS_PORT.
RUNTIME_CMD = ("python3", "-m", "edgefaas.runtime")
# What functions may import besides the runtime: numpy, OpenCV and the Triton client
# (camera, face-expression) and the Task 4.3 test-case Jobs.
RUNTIME_EXTRAS = ("vision",)
TAR = ("tar", "--numeric-owner", "--xattrs")
# Bumped whenever what follows changes the image, so caches rebuild.
BASE_LAYOUT_VERSION = "1"
IMAGE_LAYOUT_VERSION = "2"
# The camera function replays these when a device has no /dev/video* (the lab's case).
FRAMES_DIR = "/opt/edgefaas/frames"

# Timestamps written where the input has none of its own (the archive's files, the image's
# `created`): 1980-01-01, the usual SOURCE_DATE_EPOCH of reproducible builds.
REPRODUCIBLE_MTIME = 315532800
REPRODUCIBLE_CREATED = "1980-01-01T00:00:00Z"


@dataclass(frozen=True)
class DockerArchive:
    """What `write_docker_archive` wrote: enough to refer to the image and check it."""

    path: Path
    repo_tag: str
    image_id: str  # sha256:<config digest>, what `crictl images` shows as IMAGE ID
    diff_ids: tuple[str, ...]
    size: int


def images_dir() -> Path:
    return cache_dir() / "images"


def runtime_image_ref(key: str) -> str:
    """The reference pods use for the runtime image built with cache key `key`."""
    return f"{RUNTIME_REPO}:{key}"


# ---------------------------------------------------------------- docker-archive writer


def _layer_entries(root: Path) -> Iterator[Path]:
    """Every path under `root` in one fixed order (a parent sorts before its children)."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        found.extend((rel / name).as_posix() for name in (*dirnames, *filenames))
    for name in sorted(found):
        yield root / name


def pack_layer(root: Path, out: Path, mtime: int | None = None) -> None:
    """Pack the tree `root` as a layer tar whose bytes depend only on the tree.

    Entries are sorted, owners numeric (host user names must not leak in: the image has
    its own /etc/passwd), mtimes whole seconds and clamped to `mtime` when given, and
    hard links kept. Device nodes, fifos and sockets are left out: the container runtime
    provides /dev, and none belongs in an image layer. Extended attributes (file
    capabilities) are not carried: nothing in these images has any.
    """
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in _layer_entries(root):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            if info is None or not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
                continue
            info.uname = info.gname = ""
            info.mtime = int(info.mtime) if mtime is None else min(int(info.mtime), mtime)
            if info.isreg():
                with open(path, "rb") as data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, REPRODUCIBLE_MTIME
    tar.addfile(info, io.BytesIO(data))


def write_docker_archive(
    out: Path,
    repo_tag: str,
    layers: Path | Sequence[Path],
    config: dict[str, Any],
    mtime: int | None = None,
) -> DockerArchive:
    """Write a `docker save` tarball that containerd, K3S and skopeo import.

    `layers` (bottom first) are directories, packed by `pack_layer` (mtimes clamped to
    `mtime` when given), or ready layer tars used byte for byte. `config` is the image
    config without `rootfs`, which is filled in with each layer's diff_id (the sha256 of
    its uncompressed tar); `architecture` and `os` default to amd64 and linux. Written
    to a temporary file and renamed, so a reader never sees half an image.
    """
    sources = [layers] if isinstance(layers, (str, Path)) else list(layers)
    if not sources:
        raise ValueError("an image needs at least one layer")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".image-") as tmp:
        layer_tars: list[tuple[str, Path]] = []
        for number, source in enumerate(map(Path, sources)):
            if source.is_dir():
                packed = Path(tmp) / f"layer-{number}.tar"
                pack_layer(source, packed, mtime)
                source = packed
            layer_tars.append((artifacts.sha256_file(source), source))
        full = {"architecture": "amd64", "os": "linux", **config}
        full["rootfs"] = {"type": "layers", "diff_ids": [f"sha256:{digest}" for digest, _ in layer_tars]}
        config_bytes = json.dumps(full, sort_keys=True, separators=(",", ":")).encode()
        config_digest = hashlib.sha256(config_bytes).hexdigest()
        manifest = [
            {
                "Config": f"{config_digest}.json",
                "RepoTags": [repo_tag],
                "Layers": [f"{digest}.tar" for digest, _ in layer_tars],
            }
        ]
        partial = Path(tmp) / "image.tar"
        with tarfile.open(partial, "w", format=tarfile.USTAR_FORMAT) as tar:
            written: set[str] = set()
            for digest, source in layer_tars:
                if digest in written:  # the same layer twice is stored once
                    continue
                written.add(digest)
                info = tarfile.TarInfo(f"{digest}.tar")
                info.size, info.mode, info.mtime = source.stat().st_size, 0o644, REPRODUCIBLE_MTIME
                with open(source, "rb") as data:
                    tar.addfile(info, data)
            _add_bytes(tar, f"{config_digest}.json", config_bytes)
            _add_bytes(tar, "manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
        partial.replace(out)
    return DockerArchive(
        path=out,
        repo_tag=repo_tag,
        image_id=f"sha256:{config_digest}",
        diff_ids=tuple(f"sha256:{digest}" for digest, _ in layer_tars),
        size=out.stat().st_size,
    )


def write_info(image: DockerArchive, extra: dict[str, Any]) -> None:
    """Leave `<image>.json` beside the tarball: deploys read the reference from it."""
    info = {
        "image": image.repo_tag,
        "image_id": image.image_id,
        "diff_ids": list(image.diff_ids),
        "tar": image.path.name,
        "size": image.size,
        **extra,
    }
    image.path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")


def _history(created_by: str) -> dict[str, str]:
    return {"created": REPRODUCIBLE_CREATED, "created_by": created_by}


# ---------------------------------------------------------------- pause image


def _dpkg_arch() -> str:
    return run(["dpkg", "--print-architecture"], "dpkg --print-architecture").strip()


def _catatonit_version(package: str = "catatonit") -> str:
    """The candidate version of `package` (`catatonit` or `catatonit:<arch>`): each architecture's
    own, since Debian rebuilds (binNMUs, `+bN`) one architecture's package without the others."""
    argv = ["apt-cache", "show", "--no-all-versions", package]
    try:
        out = run(argv, f"pause-image: apt-cache show {package}")
    except RuntimeError as exc:
        if ":" not in package:
            raise
        arch = package.split(":", 1)[1]
        raise RuntimeError(
            f"pause-image: apt knows no {package}: dpkg --add-architecture {arch} && apt-get update\n{exc}"
        ) from exc
    for line in out.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"pause-image: apt-cache show {package} printed no Version (run apt-get update)")


def build_pause_image(log: Log = print, arch: str = "amd64") -> artifacts.Artifact:
    """Build (or reuse) the pod sandbox image from Debian's static catatonit.

    K3S's default pause image comes from a registry the devices cannot reach; catatonit
    in pause mode (`-P`: run nothing, wait for a signal) does the same job as Kubernetes'
    pause binary and Debian ships it statically linked, so the image is that one file.
    """
    artifacts.check_arch(arch)
    package = "catatonit" if arch == _dpkg_arch() else f"catatonit:{arch}"
    version = _catatonit_version(package)
    # amd64's key and name predate architectures and stay as they were.
    tagged = [] if arch == "amd64" else [arch]
    key_text = "\n".join([PAUSE_IMAGE, version, *PAUSE_ENTRYPOINT, PAUSE_USER, IMAGE_LAYOUT_VERSION, *tagged])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    target = images_dir() / f"{arch_prefix('pause-3.6', arch)}{key}.tar"
    if target.exists() and target.with_suffix(".json").exists():
        return artifacts.record("pause-image", "3.6", target, arch=arch)
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"pause-image: catatonit {version} from Debian as {PAUSE_IMAGE}")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".pause-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # apt-get download drops privileges to _apt, which must write here
        download = ["apt-get", "download", f"{package}={version}"]
        run(download, "pause-image: apt-get download catatonit", cwd=work)
        deb = next(work.glob("catatonit_*.deb"))
        extracted = work / "deb"
        run(["dpkg-deb", "-x", str(deb), str(extracted)], "pause-image: dpkg-deb -x")
        binary = extracted / "usr/bin/catatonit"
        if not is_static_elf(binary):
            raise RuntimeError(f"pause-image: {deb.name} has no statically linked /usr/bin/catatonit")
        if elf_arch(binary) != arch:
            raise RuntimeError(f"pause-image: {deb.name} holds a {elf_arch(binary)} catatonit, not {arch}")
        argv, env = foreign_command([str(binary), "-h"], arch)
        usage = run(["sh", "-c", f"{shlex.join(argv)} 2>&1"], "pause-image: catatonit -h", env=env)
        if "-P" not in usage or "pause mode" not in usage:
            raise RuntimeError(f"pause-image: catatonit {version} has no -P pause mode:\n{usage}")
        layer = work / "layer"
        layer.mkdir()
        shutil.copy2(binary, layer / "catatonit")
        (layer / "catatonit").chmod(0o755)
        config = {
            "architecture": arch,
            "created": REPRODUCIBLE_CREATED,
            "config": {
                "Entrypoint": list(PAUSE_ENTRYPOINT),
                "User": PAUSE_USER,
                "WorkingDir": "/",
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            },
            "history": [_history(f"catatonit {version} (Debian {SUITE}), pause mode")],
        }
        image = write_docker_archive(target, PAUSE_IMAGE, layer, config, mtime=REPRODUCIBLE_MTIME)
    write_info(image, {"catatonit": version, "entrypoint": list(PAUSE_ENTRYPOINT)})
    for old in stale(target.parent, "pause-3.6", arch, target, ".tar"):
        old.unlink()
        old.with_suffix(".json").unlink(missing_ok=True)
    log(f"pause-image: {target} ({image.size} bytes) in {time.monotonic() - started:.1f} s")
    return artifacts.record("pause-image", "3.6", target, arch=arch)


# ---------------------------------------------------------------- runtime image


def base_key() -> str:
    """Cache key of the runtime image's Debian layer: what debootstrap and the slimming make."""
    text = "\n".join(
        [SUITE, debian_mirror(), BASE_LAYOUT_VERSION, APP_USER, str(APP_UID), *sorted(RUNTIME_PACKAGES)]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def base_key_for(arch: str) -> str:
    """The base key of one architecture's tree (amd64's predates architectures and stays)."""
    if arch == "amd64":
        return base_key()
    return hashlib.sha256(f"{base_key()}\n{arch}".encode()).hexdigest()[:16]


def runtime_key(wheelhouse_key: str) -> str:
    """Cache key (and tag) of the runtime image: its Debian base and the wheelhouse in it."""
    text = "\n".join(
        [
            base_key(),
            wheelhouse_key,
            VENV,
            IMAGE_LAYOUT_VERSION,
            FRAMES_DIR,
            *PHOTOS,
            *RUNTIME_EXTRAS,
            *RUNTIME_CMD,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _remove(path: Path) -> None:
    if _is_real_dir(path):
        shutil.rmtree(path)
    else:
        path.unlink()


def _slim(root: Path) -> None:
    """Drop what a pod never uses: apt's lists and caches, docs (copyrights kept), logs."""
    for rel in ("var/lib/apt/lists", "var/cache/apt", "usr/share/man", "usr/share/info", "usr/share/locale"):
        shutil.rmtree(root / rel, ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)
    (root / "usr/share/locale").mkdir()
    for package in (root / "usr/share/doc").iterdir():
        for item in package.iterdir() if _is_real_dir(package) else ():
            if item.name != "copyright":
                _remove(item)
    for log_file in (root / "var/log").rglob("*"):
        if log_file.is_file():
            log_file.unlink()
    for cache in (root / "var/cache/debconf").glob("*-old"):
        cache.unlink()
    # The host's name and resolver leak in through debootstrap; the container runtime
    # mounts its own /etc/hosts, /etc/hostname and /etc/resolv.conf.
    for rel in ("etc/resolv.conf", "etc/hostname"):
        (root / rel).unlink(missing_ok=True)
    # Device nodes debootstrap made: the runtime provides /dev.
    for node in (root / "dev").iterdir():
        _remove(node)


def arch_prefix(kind: str, arch: str) -> str:
    """File name prefix of an image file: amd64's names predate architectures and stay."""
    return f"{kind}-" if arch == "amd64" else f"{kind}-{arch}-"


def stale(directory: Path, kind: str, arch: str, keep: Path, suffix: str) -> list[Path]:
    """Older files of this kind and architecture (never another architecture's)."""
    prefix = arch_prefix(kind, arch)
    others = [f"{kind}-{a}-" for a in artifacts.ARCHES if a != arch and a != "amd64"]
    return [
        old
        for old in directory.glob(f"{prefix}*{suffix}")
        if old != keep and not any(old.name.startswith(o) for o in others)
    ]


def build_runtime_base(log: Log = print, arch: str = "amd64") -> Path:
    """Return the cached Debian tree of the runtime image (.tar.zst), running debootstrap if missing.

    Cached apart from the image so that a new wheelhouse (every source change) rebuilds
    only the venv layer in seconds, and the base layer's bytes stay the same. A foreign
    architecture's second stage runs under qemu-user (binfmt_misc, only while it runs).
    """
    key = base_key_for(arch)
    target = images_dir() / f"{arch_prefix(f'runtime-base-{SUITE}', arch)}{key}.tar.zst"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".runtime-base-") as tmp:
        root = Path(tmp) / "root"
        log(f"runtime-image: debootstrap {SUITE} {arch} minbase + {', '.join(RUNTIME_PACKAGES)}")
        argv = [
            "debootstrap",
            "--variant=minbase",
            f"--arch={arch}",
            f"--include={','.join(RUNTIME_PACKAGES)}",
        ]
        run([*argv, SUITE, str(root), debian_mirror()], f"runtime-image: debootstrap ({arch})")
        # Pods run as this user (runAsUser); the image's default user stays root.
        useradd = ["useradd", "-u", str(APP_UID), "-U", "-m", "-s", "/usr/sbin/nologin", APP_USER]
        run(["chroot", str(root), *useradd], "runtime-image: create user app")
        _slim(root)
        partial = Path(tmp) / "base.tar.zst"
        log("runtime-image: packing the base tree")
        run(
            [*TAR, "-I", "zstd -T0 -3", "-C", str(root), "-cf", str(partial), "."], "runtime-image: pack base"
        )
        for old in stale(target.parent, f"runtime-base-{SUITE}", arch, target, ".tar.zst"):
            old.unlink()
        partial.replace(target)
    size = target.stat().st_size >> 20
    log(f"runtime-image: base cached ({size} MiB) in {time.monotonic() - started:.0f} s")
    return target


def _copy_dir_meta(source: Path, dest: Path) -> None:
    """Give a directory of the venv layer its base-layer owner and mode, so the layer changes neither."""
    meta = source.lstat()
    dest.mkdir(exist_ok=True)
    os.chown(dest, meta.st_uid, meta.st_gid)
    dest.chmod(stat.S_IMODE(meta.st_mode))


def _venv_layer(root: Path, wheels_tar: Path, layer: Path) -> None:
    """Install the wheelhouse into a venv inside the base tree, then move it out into `layer`."""
    wheels = root / "tmp/wheels"
    wheels.mkdir()
    # The wheelhouse is a flat tar of *.whl; copied member by member (extractall's `filter`
    # is missing from Debian 12's Python 3.11.2).
    with tarfile.open(wheels_tar) as tar:
        for member in tar:
            data = tar.extractfile(member) if member.isreg() else None
            if data is not None and member.name.endswith(".whl") and "/" not in member.name:
                (wheels / member.name).write_bytes(data.read())
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",  # leave the base tree exactly as debootstrap made it
    }
    chroot = ["chroot", str(root)]
    run([*chroot, "python3", "-m", "venv", "--without-pip", VENV], "runtime-image: create venv", env=env)
    # The venv gets no pip of its own (nothing installs in a pod); Debian's pip wheel runs as is.
    pip_wheel = next((root / "usr/share/python-wheels").glob("pip-*.whl"), None)
    if pip_wheel is None:
        raise RuntimeError("runtime-image: no pip wheel in /usr/share/python-wheels (python3-pip-whl)")
    pip = [f"{VENV}/bin/python", f"/usr/share/python-wheels/{pip_wheel.name}/pip"]
    pip_flags = ["--disable-pip-version-check", "--no-cache-dir", "--no-compile", "-q"]
    requirement = f"edgefaas[{','.join(RUNTIME_EXTRAS)}]" if RUNTIME_EXTRAS else "edgefaas"
    install = ["install", *pip_flags, "--no-index", "--find-links", "/tmp/wheels", requirement]
    run([*chroot, *pip, *install], "runtime-image: pip install the wheelhouse", env=env)
    # Unchecked-hash pycs do not depend on file times, and the venv never changes in a pod.
    compile_argv = [f"{VENV}/bin/python", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash"]
    run([*chroot, *compile_argv, VENV], "runtime-image: compile the venv", env=env)
    run([*chroot, f"{VENV}/bin/edgefaas", "--help"], "runtime-image: edgefaas --help in the venv", env=env)
    shutil.rmtree(wheels)
    relative = Path(VENV.lstrip("/"))
    for parent in reversed(relative.parents[:-1]):
        _copy_dir_meta(root / parent, layer / parent)
    (layer / relative).parent.mkdir(parents=True, exist_ok=True)
    shutil.move(root / relative, layer / relative)
    # `edgefaas` on PATH even for a process that does not take the image's PATH.
    _copy_dir_meta(root / "usr", layer / "usr")
    _copy_dir_meta(root / "usr/local", layer / "usr/local")
    _copy_dir_meta(root / "usr/local/bin", layer / "usr/local/bin")
    (layer / "usr/local/bin/edgefaas").symlink_to(f"{VENV}/bin/edgefaas")


def _frames(layer: Path, photos: list[Path]) -> None:
    """Sample photos into FRAMES_DIR, readable by the pods' unprivileged user."""
    frames = layer / FRAMES_DIR.lstrip("/")
    frames.mkdir(parents=True, exist_ok=True)
    frames.chmod(0o755)
    for photo in photos:
        shutil.copyfile(photo, frames / photo.name)
        (frames / photo.name).chmod(0o644)


def build_runtime_image(log: Log = print, arch: str = "amd64") -> artifacts.Artifact:
    """Build (or reuse) the function runtime image `docker.io/edgefaas/runtime:<key>`.

    The artifact's version is the key, which is also the image tag: the deploy reads it
    from the manifest (or `<tar>.json`) and names `runtime_image_ref(version)` in pods.
    """
    from edgefaas.lab import binfmt
    from edgefaas.lab.builds import wheelhouse

    wheel_artifact = wheelhouse.build(log, arch=artifacts.check_arch(arch))
    # One tag for every architecture (from what is the same on all of them), so a pod spec
    # names one image and each node runs its own architecture's build of it.
    key = runtime_key(wheel_artifact.version)
    ref = runtime_image_ref(key)
    target = images_dir() / f"{arch_prefix('runtime', arch)}{key}.tar"
    if target.exists() and target.with_suffix(".json").exists():
        return artifacts.record("runtime-image", key, target, arch=arch)
    with binfmt.emulation(f"build:{os.getpid()}", arch, log):
        return _build_runtime_image(log, arch, wheel_artifact, key, ref, target)


def _build_runtime_image(
    log: Log, arch: str, wheel_artifact: artifacts.Artifact, key: str, ref: str, target: Path
) -> artifacts.Artifact:
    started = time.monotonic()
    base = build_runtime_base(log, arch)
    log(f"runtime-image: building {ref}")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".runtime-") as tmp:
        root, venv_layer, base_layer = Path(tmp) / "root", Path(tmp) / "venv", Path(tmp) / "base.tar"
        root.mkdir()
        venv_layer.mkdir()
        run([*TAR, "-I", "zstd", "-C", str(root), "-xf", str(base)], "runtime-image: unpack base")
        # Packed before anything runs in the tree: its bytes follow from the cached base alone.
        pack_layer(root, base_layer)
        _venv_layer(root, Path(wheel_artifact.path), venv_layer)
        _frames(venv_layer, sample_photos(log))
        config = {
            "architecture": arch,
            "created": REPRODUCIBLE_CREATED,
            "config": {
                "Env": [f"PATH={RUNTIME_PATH}", "LANG=C.UTF-8", f"VIRTUAL_ENV={VENV}"],
                "Cmd": list(RUNTIME_CMD),
                "WorkingDir": "/",
                "Labels": {"org.opencontainers.image.title": "edgefaas-runtime", "edgefaas.key": key},
            },
            "history": [
                _history(f"debootstrap --variant=minbase --include={','.join(RUNTIME_PACKAGES)} {SUITE}"),
                _history(f"{VENV}: edgefaas wheelhouse {wheel_artifact.version}"),
            ],
        }
        image = write_docker_archive(target, ref, [base_layer, venv_layer], config, mtime=REPRODUCIBLE_MTIME)
    write_info(
        image,
        {"key": key, "wheelhouse": wheel_artifact.version, "cmd": list(RUNTIME_CMD), "app_uid": APP_UID},
    )
    for old in stale(target.parent, "runtime", arch, target, ".tar"):
        old.unlink()
        old.with_suffix(".json").unlink(missing_ok=True)
    log(f"runtime-image: {ref} ({image.size >> 20} MiB) in {time.monotonic() - started:.0f} s")
    return artifacts.record("runtime-image", key, target, arch=arch)
