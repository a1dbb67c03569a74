"""Image functions end to end on this machine: the example image built without Docker, pushed
with skopeo to a real docker-registry over HTTPS from a test CA, pulled back by digest and run
under OpenFaaS's watchdog contract; and a deploy of an image the registry lacks answering with
the registry's reason and leaving nothing behind."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import time

import httpx
import pytest

from edgefaas.backends import kubernetes_manifests as km
from edgefaas.backends.base import DeployError, FunctionSpec
from edgefaas.deploy import registry
from edgefaas.lab.artifacts import native_arch
from edgefaas.lab.builds import function_image

from .kube_fakes import FakeCluster, make_backend
from .live_gateway import free_port
from .registry_server import RegistryServer

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> function_image.OciArchive:
    return function_image.build_archive(tmp_path_factory.mktemp("image"), [native_arch()], log=lambda _: None)


@pytest.fixture(scope="module")
def site_registry(tmp_path_factory):
    server = RegistryServer(tmp_path_factory.mktemp("registry")).start()
    yield server
    server.stop()


def _push(server: RegistryServer, archive: function_image.OciArchive, reference: str) -> None:
    argv = registry.push_argv(
        str(archive.path), archive.tag, reference, str(server.cert_dir), str(server.authfile)
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _registry_args(server: RegistryServer) -> list[str]:
    return ["--cert-dir", str(server.cert_dir), "--authfile", str(server.authfile)]


def test_the_image_is_the_same_bytes_from_the_same_binary(tmp_path, example):
    binary = tmp_path / "bin"
    with tarfile.open(example.path) as tar:
        index = json.load(tar.extractfile("index.json"))
    assert index["manifests"][0]["annotations"][function_image.REF_NAME] == example.tag
    binary.write_bytes(b"\x7fELF not really")
    first = function_image.write_oci_archive(tmp_path / "a.tar", "t", {"amd64": binary, "arm64": binary})
    second = function_image.write_oci_archive(tmp_path / "b.tar", "t", {"arm64": binary, "amd64": binary})
    assert first.index_digest == second.index_digest
    assert first.path.read_bytes() == second.path.read_bytes()
    assert set(first.manifests) == {"amd64", "arm64"}


def test_pushed_with_skopeo_then_pulled_back_by_digest_and_it_answers_as_a_watchdog(
    tmp_path, example, site_registry
):
    reference = f"{site_registry.host}/{function_image.REPOSITORY}:{example.tag}"
    _push(site_registry, example, reference)

    # What the registry now serves under the tag is the index the build wrote, byte for byte.
    raw = site_registry.skopeo(
        "inspect", "--raw", *_registry_args(site_registry), f"docker://{reference}"
    ).stdout
    assert f"sha256:{hashlib.sha256(raw.encode()).hexdigest()}" == example.index_digest
    pinned = f"{site_registry.host}/{function_image.REPOSITORY}@{example.index_digest}"
    inspected = json.loads(
        site_registry.skopeo("inspect", *_registry_args(site_registry), f"docker://{pinned}").stdout
    )
    # skopeo resolved the index to this machine's image, as containerd on a node does.
    assert inspected["Architecture"] == native_arch() and inspected["Digest"] == example.index_digest

    # Pulled back (as a node would, by digest), unpacked and run: the watchdog contract.
    pulled = tmp_path / "pulled"
    site_registry.skopeo(
        "copy",
        "--quiet",
        "--src-cert-dir",
        str(site_registry.cert_dir),
        "--src-authfile",
        str(site_registry.authfile),
        f"docker://{pinned}",
        f"dir:{pulled}",
    )
    manifest = json.loads((pulled / "manifest.json").read_text())
    assert (
        f"sha256:{hashlib.sha256((pulled / 'manifest.json').read_bytes()).hexdigest()}"
        == example.manifests[native_arch()]
    )
    layer = pulled / manifest["layers"][0]["digest"].split(":", 1)[1]
    root = tmp_path / "root"
    with tarfile.open(layer) as tar:
        tar.extractall(root, filter="tar")
    port = free_port()
    process = subprocess.Popen(
        [str(root / function_image.ENTRYPOINT.lstrip("/"))],
        env={"port": str(port), "EDGEFAAS_NODE_NAME": "sonic-1", "PATH": os.defpath},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                health = httpx.get(f"{base}{km.WATCHDOG_HEALTH_PATH}", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the function never listened"
                time.sleep(0.05)
        assert health.status_code == 200
        answer = httpx.post(f"{base}/any/path?x=1", content=b"ping", timeout=5)
        assert answer.status_code == 200
        body = answer.json()
        assert body["echo"] == "ping" and body["path"] == "/any/path" and body["query"] == "x=1"
        assert body["node"] == "sonic-1"
        process.terminate()
        assert process.wait(10) == 0  # SIGTERM is a clean stop, as a pod's rollout sends it
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_registry_refuses_a_push_without_the_account(tmp_path, example, site_registry):
    (tmp_path / "empty.json").write_text('{"auths": {}}')
    argv = registry.push_argv(
        str(example.path),
        example.tag,
        f"{site_registry.host}/intruder/image:1",
        str(site_registry.cert_dir),
        str(tmp_path / "empty.json"),
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "unauthorized" in done.stderr.lower()


def test_the_htpasswd_entry_admits_only_its_password():
    line = registry.htpasswd_line("edgefaas", "s3cret", rounds=4)
    assert line.startswith("edgefaas:$2y$")
    assert registry.htpasswd_matches(line, "edgefaas", "s3cret")
    assert not registry.htpasswd_matches(line, "edgefaas", "other")
    assert not registry.htpasswd_matches(line, "someone", "s3cret")


def test_an_image_the_registry_lacks_is_refused_with_its_reason_and_nothing_is_left(example, site_registry):
    def pull(image: str) -> str | None:
        # The kubelet's pull, answered by the real registry: its words are what the node reports.
        done = site_registry.skopeo(
            "inspect", "--raw", *_registry_args(site_registry), f"docker://{image}", check=False
        )
        return None if done.returncode == 0 else done.stderr.strip()

    cluster = FakeCluster()
    cluster.pull = pull
    backend = make_backend(cluster)
    missing = f"{site_registry.host}/edgefaas/not-pushed:1"
    with pytest.raises(DeployError) as refused:
        backend.deploy(FunctionSpec("Ghost", image=missing))
    message = str(refused.value)
    assert "ErrImagePull" in message and "not-pushed" in message
    assert "manifest unknown" in message or "not found" in message
    assert not cluster.objects["Deployment"] and not cluster.objects["Service"] and not cluster.objects["Pod"]

    # The same deploy of the image that was pushed runs.
    pushed = f"{site_registry.host}/{function_image.REPOSITORY}:{example.tag}"
    _push(site_registry, example, pushed)
    status = backend.deploy(FunctionSpec("Hello", image=pushed))
    assert status.available_replicas == 1 and status.spec.image == pushed


def test_the_deploy_pushes_the_example_only_when_the_registry_lacks_it(example, site_registry):
    # deploys/registry.py asks this fact first, so a second deploy changes nothing.
    from edgefaas.deploy.facts import RegistryHasImage

    fact = RegistryHasImage()
    reference = f"{site_registry.host}/{function_image.REPOSITORY}:pushed-{example.tag}"

    def asked() -> bool:
        command = fact.command(reference, str(site_registry.cert_dir), str(site_registry.authfile))
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
        return fact.process(done.stdout.splitlines())

    assert not asked()
    _push(site_registry, example, reference)
    assert asked()


def test_a_registry_whose_unit_is_not_active_is_not_asked(tmp_path):
    """On a first deploy the registry is not started yet: the fact answers at once, without waiting
    on a port the switch's ACL drops silently."""
    from edgefaas.deploy.facts import RegistryHasImage

    fact = RegistryHasImage()
    # A unit no host has: systemctl says inactive (or there is no systemd), and skopeo is never run.
    command = fact.command(
        "192.0.2.1:5000/x:y", str(tmp_path), str(tmp_path / "auth.json"), "no-such-unit.service"
    )
    assert command.index("systemctl is-active --quiet no-such-unit.service &&") < command.index("skopeo")
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=10)
    assert fact.process(done.stdout.splitlines()) is False
