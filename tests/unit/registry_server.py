"""A real docker-registry (Debian's distribution v2) on a free loopback port, for unit tests.

Configured from the blueprint's own template (templates/registry/config.yml.j2): HTTPS with a
certificate from a test CA made here, htpasswd auth with the account's bcrypt entry as
edgefaas.deploy.registry writes it. ``cert_dir`` holds the CA as skopeo wants it (ca.crt).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import jinja2

from edgefaas.deploy import registry

from .live_gateway import free_port
from .prometheus_server import loopback_ca

PASSWORD = "registry-test-password"


def test_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate from it for 127.0.0.1: (CA pem, cert pem, key pem); the CA
    as ca.crt, the name skopeo's cert-dir layout reads."""
    ca, cert, key = loopback_ca(directory)
    return ca.rename(directory / "ca.crt"), cert, key


def registry_binary() -> str:
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is missing: apt-get install docker-registry (scripts/setup installs it)"
    return binary


class RegistryServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.cert_dir = root / "certs"  # only ca.crt: skopeo reads every *.crt there as a CA
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> RegistryServer:
        ca, cert, key = test_ca(self.root / "tls")
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(ca, self.cert_dir / "ca.crt")
        self.ca = ca
        htpasswd = self.root / "htpasswd"
        htpasswd.write_text(registry.htpasswd_line(registry.USER, PASSWORD, rounds=4))
        template = jinja2.Template((registry.TEMPLATES / "config.yml.j2").read_text())
        config = self.root / "config.yml"
        config.write_text(
            template.render(
                storage_dir=self.root / "storage",
                listen=self.host,
                cert=cert,
                key=key,
                htpasswd=htpasswd,
            )
        )
        self.authfile = self.root / "auth.json"
        self.authfile.write_text(registry.auth_file(self.host, registry.USER, PASSWORD))
        log = (self.root / "registry.log").open("ab")
        self.process = subprocess.Popen([registry_binary(), "serve", str(config)], stdout=log, stderr=log)
        context = ssl.create_default_context(cafile=str(ca))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited: {(self.root / 'registry.log').read_text()[-2000:]}"
                )
            try:
                # 401 without credentials: it is up, and it asks for them.
                if httpx.get(f"https://{self.host}/v2/", verify=context, timeout=1).status_code == 401:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("docker-registry did not answer within 20 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def skopeo(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """skopeo against this registry, verifying it by the test CA, as the site's account."""
        return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=check, timeout=timeout)
