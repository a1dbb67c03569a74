"""The perf tools against an HTTPS-only gateway: a real gateway process serving a certificate from a
CA, reached at the URL the inventory gives, verified by that CA alone (the report's upload, the
Triton bench's sampled calls, locust's users), and refused when another CA certified it."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from edgefaas.deploy.inventory import HostData, InventoryHost
from edgefaas.nodeauth.certificates import CertificateAuthority
from edgefaas.nodeauth.tls import client_context, pem_certificate, server_credentials
from edgefaas.perf import publish, triton
from edgefaas.perf.bench import BenchError
from edgefaas.perf.frames import frame_jpeg
from edgefaas.perf.locust_run import run_locust
from edgefaas.perf.site_gateway import (
    CA_FILE_ENV,
    GatewayAccessError,
    GatewayTarget,
    gateway_ca,
    gateway_target,
    gateway_verify,
    pinned_key,
)

from .live_gateway import free_port
from .parsec_fakes import FakeParsecWithRsa

pytestmark = pytest.mark.unit

PASSWORD = "s3cret-admin"
FUNCTION = "faces-stub"
SERVED_BY = "http://triton.invalid:8000"
# Stands in for face-expression (no Triton here): answers what the perf clients read from it.
STUB = f"""
def handle(event, context):
    return {{"faces": [], "served_by": "{SERVED_BY}", "inference_ms": 1.0}}
"""
PERF = Path(triton.__file__).parent


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """A gateway process on HTTPS only, certified by its own CA: url, port, ca (its PEM file),
    other (a PEM file of another CA)."""
    folder = tmp_path_factory.mktemp("https-gateway")
    ca = CertificateAuthority(FakeParsecWithRsa())
    cert, key = server_credentials(ca, ["127.0.0.1", "localhost"])
    (folder / "tls.crt").write_bytes(cert)
    (folder / "tls.key").write_bytes(key)
    os.chmod(folder / "tls.key", 0o600)
    (folder / "ca.pem").write_bytes(pem_certificate(ca.self_signed()))
    (folder / "other.pem").write_bytes(
        pem_certificate(CertificateAuthority(FakeParsecWithRsa()).self_signed())
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFAAS_")}
    env["EDGEFAAS_ADMIN_PASSWORD"] = PASSWORD
    command = [sys.executable, "-m", "edgefaas.cli", "gateway", "--backend", "local", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--data-dir", str(folder / "data"), "--log-level", "warning"]
    command += ["--tls-cert", str(folder / "tls.crt"), "--tls-key", str(folder / "tls.key")]
    log = (folder / "gateway.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"https://127.0.0.1:{port}"
    trusting = client_context(folder / "ca.pem")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (folder / "gateway.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", verify=trusting, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the gateway did not answer HTTPS within 60 s"
            time.sleep(0.2)
        with httpx.Client(base_url=url, auth=("admin", PASSWORD), verify=trusting, timeout=60) as admin:
            deployed = admin.post(
                "/system/functions", json={"service": FUNCTION, "code": STUB, "public": True}
            )
            assert deployed.status_code == 202, deployed.text
            # Once it answers, the locust runs below measure calls, not the function's start.
            assert admin.post(f"/function/{FUNCTION}", content=b"warm").status_code == 200
        yield SimpleNamespace(
            url=url, port=port, ca=folder / "ca.pem", other=folder / "other.pem", cert=folder / "tls.crt"
        )
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def _inventory(port: int, **data) -> list[InventoryHost]:
    server = {"ssh_hostname": "127.0.0.1", "edgefaas_gateway_port": port, **data}
    return [
        InventoryHost("jetson-1", ("jetson", "k3s_agent"), HostData({"ssh_hostname": "10.0.0.3"})),
        InventoryHost("sonic-1", ("sonic", "k3s_server"), HostData(server)),
    ]


def test_the_report_and_the_sampled_calls_reach_the_inventory_gateway_verified_by_its_ca(
    gateway, tmp_path, monkeypatch
):
    monkeypatch.delenv(CA_FILE_ENV, raising=False)
    target = gateway_target(_inventory(gateway.port))
    assert target.url == gateway.url and target.host == "sonic-1"  # HTTPS: the site's default
    verify = gateway_verify(target, gateway.ca)
    report = tmp_path / "report.html"
    report.write_text("<html><body>figures 42</body></html>")
    where = publish.upload(report, target.url, PASSWORD, verify=verify)
    assert where == f"{gateway.url}/#/performance"
    shown = httpx.get(f"{gateway.url}/console/perf-report", auth=("admin", PASSWORD), verify=verify)
    assert shown.text == report.read_text()
    served, answers = triton.sample_function(target.url, FUNCTION, frame_jpeg(None, (64, 48)), 3, verify)
    assert served == Counter({SERVED_BY: 3}) and all(a["faces"] == [] for a in answers)

    # Another CA's certificate, or the system's store: the gateway is refused, nothing is sent.
    for refused in (gateway_verify(target, gateway.other), True):
        with pytest.raises(publish.PublishError, match="CERTIFICATE_VERIFY_FAILED"):
            publish.upload(report, target.url, PASSWORD, verify=refused)
        with pytest.raises(BenchError, match="CERTIFICATE_VERIFY_FAILED"):
            triton.sample_function(target.url, FUNCTION, b"jpeg", 1, refused)


def test_the_ca_is_the_option_s_then_the_environment_s_then_the_k3s_server_s(gateway, tmp_path):
    target = gateway_target(_inventory(gateway.port, ssh_port=free_port()))
    good, other = gateway.ca.read_text(), gateway.other.read_text()
    assert gateway_ca(target, gateway.ca, {CA_FILE_ENV: str(gateway.other)}) == good
    assert gateway_ca(target, None, {CA_FILE_ENV: str(gateway.other)}) == other
    # Neither: the K3S server's published CA over SSH, whose failure names the file and the host.
    with pytest.raises(GatewayAccessError, match=r"sonic-1:/etc/edgefaas/ca\.pem\) over SSH"):
        gateway_ca(target, None, {})
    # A plain-HTTP site needs no CA and asks nobody for one.
    plain = gateway_target(_inventory(gateway.port, edgefaas_gateway_tls=False, ssh_port=free_port()))
    assert plain.url == f"http://127.0.0.1:{gateway.port}" and gateway_ca(plain, None, {}) is None
    # A file that is no CA certificate is refused naming it; an HTTPS URL without an inventory
    # host to ask needs the option.
    (tmp_path / "empty.pem").write_text("")
    for bad in (tmp_path / "empty.pem", tmp_path / "absent.pem"):
        with pytest.raises(GatewayAccessError, match=str(bad)):
            gateway_ca(target, bad, {})
    with pytest.raises(GatewayAccessError, match="--ca-file"):
        gateway_ca(GatewayTarget(gateway.url, None, {}), None, {})


def _locust(tmp_path: Path, tag: str, user: str, gateway, ca: Path | None) -> tuple[int, int, str]:
    """One short locust run of `user` against the gateway: (calls that succeeded, that failed, its log)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "EDGEFAAS_"))}
    if user == "FunctionUser":
        frame = tmp_path / "frame.jpg"
        frame.write_bytes(frame_jpeg(None, (64, 48)))
        samples = triton.run_locust(user, 1, 2, tmp_path, tag, frame, gateway.url, FUNCTION, ca_file=ca)
    else:
        options = ["--host", gateway.url, "--function", FUNCTION, *(["--ca-file", str(ca)] if ca else [])]
        samples = run_locust(PERF / "locustfile_functions.py", user, 1, 2, tmp_path, tag, options, env)
    ok = sum(1 for s in samples["samples"] if s["ok"])
    return ok, len(samples["samples"]) - ok, (tmp_path / f"locust-{tag}.log").read_text(errors="replace")


@pytest.mark.parametrize("user", ["GatewayUser", "FunctionUser"])
def test_locust_s_users_verify_the_gateway_by_the_ca_alone(gateway, tmp_path, user):
    ok, failed, log = _locust(tmp_path, "trusted", user, gateway, gateway.ca)
    assert ok > 0 and failed == 0, log
    # locust's FastHttpUser would not verify at all by default: here another CA's certificate,
    # or none given (the system's store), refuses every call.
    for tag, ca in (("other", gateway.other), ("none", None)):
        ok, failed, log = _locust(tmp_path, tag, user, gateway, ca)
        assert ok == 0 and failed > 0, log
        assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log, log


def test_the_console_bench_s_browser_trusts_the_key_the_ca_certified_and_nothing_else(gateway):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from edgefaas.perf.console import CHROMIUM

    target = gateway_target(_inventory(gateway.port))
    pin = pinned_key(target.url, gateway_verify(target, gateway.ca))
    spki = (
        x509.load_pem_x509_certificate(gateway.cert.read_bytes())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert base64.b64decode(pin) == hashlib.sha256(spki).digest()
    with pytest.raises(GatewayAccessError, match="CERTIFICATE_VERIFY_FAILED"):
        pinned_key(target.url, gateway_verify(target, gateway.other))
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian's chromium package) to load the page with the pin")
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as driver:
        for args, trusted in (([f"--ignore-certificate-errors-spki-list={pin}"], True), ([], False)):
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", *args])
            try:
                page = browser.new_page()
                if trusted:
                    assert page.goto(f"{gateway.url}/healthz").status == 200
                else:
                    with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
                        page.goto(f"{gateway.url}/healthz")
            finally:
                browser.close()
