"""metrics-server: its image built from the Go module, and the manifest that runs it on K3S.

The go command is replaced by a fake that leaves the binary a real build leaves; the lab
suite (test_monitoring's `kubectl top nodes`) runs the real one.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import jinja2
import pytest
import yaml

from edgefaas.lab.builds import gobuild, metrics_server

from .elf_fakes import fake_elf

pytestmark = pytest.mark.unit

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
MACHINES = {"amd64": 62, "arm64": 183}


class FakeGo:
    def __init__(self, says: str = metrics_server.VERSION, static: bool = True):
        self.says, self.static = says, static
        self.installs: list[list[str]] = []

    def stream(self, argv, step, log, progress, unit, env=None, cwd=None):
        self.installs.append(list(argv))
        arch = env["GOARCH"]
        out = gobuild.installed_binary(Path(env["GOPATH"]), "metrics-server", arch)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(fake_elf(MACHINES[arch], self.static, b"metrics-server " + arch.encode()))
        return 1.0

    def run(self, argv, step, env=None, cwd=None, timeout=None):
        assert argv[-1] == "--version", argv
        return self.says + "\n"


@pytest.fixture
def go(monkeypatch, tmp_path):
    fake = FakeGo()
    monkeypatch.setenv("EDGEFAAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEFAAS_ARTIFACTS", raising=False)
    monkeypatch.setattr(gobuild, "native_arch", lambda: "amd64")
    monkeypatch.setattr(metrics_server, "stream", lambda *a, **k: fake.stream(*a, **k))
    monkeypatch.setattr(metrics_server, "run", lambda *a, **k: fake.run(*a, **k))
    monkeypatch.setattr(metrics_server.prerequisites, "missing", lambda parts, arches: [])
    return fake


def _image(path: Path) -> tuple[list[str], dict, dict[str, bytes]]:
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))[0]
        config = json.load(tar.extractfile(manifest["Config"]))
        files: dict[str, bytes] = {}
        for name in manifest["Layers"]:
            with tarfile.open(fileobj=tar.extractfile(name)) as layer:
                for member in layer.getmembers():
                    data = layer.extractfile(member) if member.isreg() else None
                    files[member.name] = data.read() if data else b""
    return manifest["RepoTags"], config, files


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_the_image_holds_the_built_binary_as_its_entrypoint(go, arch):
    built = metrics_server.build(lambda line: None, arch=arch)
    tags, config, files = _image(Path(built.path))
    assert tags == [metrics_server.IMAGE]
    assert config["architecture"] == arch
    assert config["config"]["Entrypoint"] == ["/metrics-server"]
    assert config["config"]["User"] == metrics_server.USER
    assert files["metrics-server"] == metrics_server.binary_path(arch).read_bytes()
    assert files["metrics-server"].endswith(b"metrics-server " + arch.encode())
    assert "tmp" in files  # the emptyDir's mount point on a read-only root
    [argv] = go.installs
    assert argv[-1] == f"{metrics_server.PACKAGE}@{metrics_server.VERSION}"


def test_a_second_build_reuses_the_binary_and_the_image(go):
    first = metrics_server.build(lambda line: None, arch="arm64")
    again = metrics_server.build(lambda line: None, arch="arm64")
    assert len(go.installs) == 1
    assert again.path == first.path and again.sha256 == first.sha256


def test_a_binary_that_names_another_version_is_refused_and_not_kept(go):
    go.says = "v0.0.0-master+$Format:%H$"  # what an unstamped build prints
    with pytest.raises(RuntimeError, match=r"expected v0\.6\.1"):
        metrics_server.build(lambda line: None, arch="amd64")
    assert not gobuild.is_cached(metrics_server.binary_path("amd64"), metrics_server.binary_key("amd64"))
    go.says = metrics_server.VERSION
    metrics_server.build(lambda line: None, arch="amd64")
    assert len(go.installs) == 2


def test_a_dynamic_binary_is_refused(go):
    go.static = False
    with pytest.raises(RuntimeError, match="not a static amd64 binary"):
        metrics_server.build(lambda line: None, arch="amd64")


def _manifest() -> dict[str, dict]:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = env.from_string((TEMPLATES / "k3s" / "metrics-server.yaml.j2").read_text()).render(
        image=metrics_server.IMAGE, resolution="15s"
    )
    return {f"{doc['kind']}/{doc['metadata']['name']}": doc for doc in yaml.safe_load_all(text)}


def test_the_manifest_runs_the_built_image_on_a_server_without_pulling():
    docs = _manifest()
    pod = docs["Deployment/metrics-server"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == metrics_server.IMAGE
    assert container["imagePullPolicy"] == "Never"
    assert pod["nodeSelector"]["node-role.kubernetes.io/control-plane"] == "true"
    # Kubelets' serving certificates are checked with the cluster CA.
    assert not any("insecure" in arg for arg in container["args"])
    assert "--metric-resolution=15s" in container["args"]


def test_the_metrics_api_reaches_the_pod_through_its_service():
    docs = _manifest()
    api = docs["APIService/v1beta1.metrics.k8s.io"]["spec"]
    service = docs[f"Service/{api['service']['name']}"]
    assert service["metadata"]["namespace"] == api["service"]["namespace"] == "kube-system"
    template = docs["Deployment/metrics-server"]["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    ports = {port["name"] for port in template["spec"]["containers"][0]["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports
    account = template["spec"]["serviceAccountName"]
    bound = {
        name
        for name, doc in docs.items()
        if doc["kind"] in {"ClusterRoleBinding", "RoleBinding"}
        and {"kind": "ServiceAccount", "name": account, "namespace": "kube-system"} in doc["subjects"]
    }
    # It reads node metrics, delegates authentication, and reads the authentication config.
    assert {docs[name]["roleRef"]["name"] for name in bound} == {
        "system:metrics-server",
        "system:auth-delegator",
        "extension-apiserver-authentication-reader",
    }
    rules = docs["ClusterRole/system:metrics-server"]["rules"]
    assert any("nodes/metrics" in rule["resources"] and "get" in rule["verbs"] for rule in rules)
