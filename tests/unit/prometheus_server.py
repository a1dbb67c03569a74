"""Debian's real prometheus and prometheus-alertmanager for the unit tests, configured from the very
templates deploys/monitoring.py installs (templates/monitoring/), on loopback ports, data in a
temporary directory; and a throwaway CA with a certificate for 127.0.0.1, so that they scrape and
call a gateway over HTTPS verified by a CA file, as on a device."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import jinja2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "monitoring"
INSTALL = "apt-get install prometheus prometheus-alertmanager (scripts/setup installs them)"


def render(template: str, **values: Any) -> str:
    """A template of templates/monitoring/ as pyinfra's files.template renders it (undefined: an error)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string((TEMPLATES / template).read_text()).render(**values)


def binary(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: {INSTALL}"
    return found


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def loopback_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, tls.crt, tls.key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "tls.crt", directory / "tls.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths[2].chmod(0o600)
    return paths


@contextmanager
def _serving(argv: list[str], url: str, log: Path, what: str) -> Iterator[str]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"{what} exited at start:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/-/ready", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{what} not ready within 30 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def prometheus(directory: Path, port: int, config: str, rules: str = "") -> Iterator[str]:
    """Prometheus on 127.0.0.1:`port` with `config` (its rule file is <directory>/rules.yml); its URL."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.yml").write_text(rules or "groups: []\n")
    (directory / "prometheus.yml").write_text(config)
    argv = [
        binary("prometheus"),
        f"--config.file={directory / 'prometheus.yml'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={directory / 'data'}",
    ]
    with _serving(argv, f"http://127.0.0.1:{port}", directory / "prometheus.log", "prometheus") as url:
        yield url


@contextmanager
def alertmanager(directory: Path, port: int, config: str) -> Iterator[str]:
    """Alertmanager on 127.0.0.1:`port`, no cluster port, with `config`; its URL."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "alertmanager.yml").write_text(config)
    argv = [
        binary("prometheus-alertmanager"),
        f"--config.file={directory / 'alertmanager.yml'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        f"--storage.path={directory / 'data'}",
    ]
    with _serving(argv, f"http://127.0.0.1:{port}", directory / "alertmanager.log", "alertmanager") as url:
        yield url


def targets_up(url: str) -> dict[str, str]:
    """scrape URL -> health ("up", "down", "unknown") of every active target of a Prometheus."""
    answer = httpx.get(f"{url}/api/v1/targets", timeout=5, trust_env=False).json()
    return {t["scrapeUrl"]: t["health"] for t in answer["data"]["activeTargets"]}


def wait_for(check: Any, timeout: float, what: str, every: float = 0.5) -> Any:
    """check() until it returns something true; its value. Fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(every)
