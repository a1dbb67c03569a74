"""The inventory's EdgeFaaS gateway as the perf tools reach it: its URL, the CA that verifies it.

The gateway is the inventory's (first) ``k3s_server`` host, at ``edgefaas_gateway_url`` or at
<ssh_hostname>:<edgefaas_gateway_port> in the scheme the site serves (``edgefaas_gateway_tls``,
HTTPS by default: the deploys' own rule, edgefaas.deploy.gateways.gateway_url). An HTTPS
gateway is verified by the blueprint's CA alone, never by the system's store and never not at
all. The CA certificate is, in order: the file given (``--ca-file``), EDGEFAAS_CA_FILE, or the
one the deploy publishes at /etc/edgefaas/ca.pem on the K3S server, read over SSH with the
inventory's key and known hosts.
"""

from __future__ import annotations

import os
import shlex
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefaas.nodeauth.tls import CA_PEM, client_context

CA_FILE_ENV = "EDGEFAAS_CA_FILE"
CA_FILE_NAME = "gateway-ca.pem"


class GatewayAccessError(Exception):
    """Why the inventory's gateway cannot be reached or verified; the message says what to fix."""


@dataclass(frozen=True)
class GatewayTarget:
    url: str
    host: str | None  # inventory name of the K3S server (None: no inventory host to ask over SSH)
    data: Mapping[str, Any]

    @property
    def tls(self) -> bool:
        return self.url.startswith("https://")


def gateway_url_of(host: Any) -> str:
    """The gateway's base URL on inventory `host` (an object with name, groups and data)."""
    from pyinfra.api.exceptions import DeployError

    from edgefaas.deploy.gateways import gateway_url

    configured = host.data.get("edgefaas_gateway_url")
    if configured:
        return str(configured).rstrip("/")
    try:
        return gateway_url(host, host.data.get("ssh_hostname") or host.name)
    except (DeployError, ValueError) as exc:
        raise GatewayAccessError(str(exc)) from None


def gateway_target(inventory: Iterable[Any]) -> GatewayTarget:
    """The gateway of an inventory (hosts with name, groups and data): on its first k3s_server host."""
    for host in inventory:
        if "k3s_server" in host.groups:
            return GatewayTarget(gateway_url_of(host), host.name, host.data)
    raise GatewayAccessError("the inventory has no k3s_server host, so no gateway")


def read_over_ssh(target: GatewayTarget, path: str, what: str, sudo: bool = True) -> str:
    """The text of file `path` on the target's host, over SSH as the inventory reaches it.

    `what` names the file in errors; `sudo` for a file only root may read.
    """
    import paramiko

    if target.host is None:
        raise GatewayAccessError(f"no inventory host to read {what} from")
    data = target.data
    client = paramiko.SSHClient()
    known = data.get("ssh_known_hosts_file")
    if known:
        client.load_host_keys(os.path.expanduser(known))
    else:
        client.load_system_host_keys()
    # An unknown host key is refused, never trusted on first use: what is read decides whom to trust.
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key = data.get("ssh_key")
    failed = f"could not read {what} ({target.host}:{path}) over SSH"
    try:
        client.connect(
            data.get("ssh_hostname") or target.host,
            port=int(data.get("ssh_port") or 22),
            username=data.get("ssh_user") or os.environ.get("USER", "root"),
            key_filename=os.path.expanduser(key) if key else None,
            allow_agent=not key,
            timeout=10,
        )
        command = f"{'sudo -n ' if sudo else ''}cat {shlex.quote(path)}"
        _, stdout, stderr = client.exec_command(command, timeout=20)
        text = stdout.read().decode().strip()
        if stdout.channel.recv_exit_status() != 0 or not text:
            raise GatewayAccessError(f"{failed}: {stderr.read().decode().strip() or 'empty'}")
        return text
    except (OSError, paramiko.SSHException) as exc:
        raise GatewayAccessError(f"{failed}: {exc}") from None
    finally:
        client.close()


def verify_context(pem: str, source: str = "the CA certificate") -> ssl.SSLContext:
    """A client context that trusts the CA in `pem` alone and checks the gateway's name."""
    # Checked first: ssl takes empty cadata for none given and then trusts the system's store.
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise GatewayAccessError(f"{source} holds no PEM certificate")
    try:
        return client_context(pem.encode())
    except (ssl.SSLError, ValueError) as exc:
        raise GatewayAccessError(f"{source} holds no usable PEM certificate: {exc}") from None


def read_ca_file(path: Path) -> str:
    """The PEM in `path`, refused naming the file when it is missing or holds no certificate."""
    try:
        pem = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise GatewayAccessError(f"CA file {path}: {exc}") from None
    verify_context(pem, f"CA file {path}")
    return pem


def gateway_ca(
    target: GatewayTarget, ca_file: Path | None = None, environ: Mapping[str, str] = os.environ
) -> str | None:
    """The PEM of the CA the gateway's HTTPS is verified by; None for a plain-HTTP gateway.

    In order: `ca_file`, the file EDGEFAAS_CA_FILE names, the K3S server's /etc/edgefaas/ca.pem
    over SSH (public, so read without sudo).
    """
    if not target.tls:
        return None
    chosen = ca_file or (Path(environ[CA_FILE_ENV]) if environ.get(CA_FILE_ENV) else None)
    if chosen is not None:
        return read_ca_file(chosen)
    if target.host is None:
        raise GatewayAccessError(
            f"{target.url} is HTTPS and no inventory host publishes its CA: give --ca-file or {CA_FILE_ENV}"
        )
    pem = read_over_ssh(target, str(CA_PEM), "the blueprint's CA certificate", sudo=False)
    verify_context(pem, f"{target.host}:{CA_PEM}")
    return pem


def gateway_verify(target: GatewayTarget, ca_file: Path | None = None) -> ssl.SSLContext | bool:
    """httpx's `verify` for the gateway: its CA alone (True, unused, for plain HTTP)."""
    pem = gateway_ca(target, ca_file)
    return verify_context(pem) if pem is not None else True


def write_ca_file(pem: str, folder: Path) -> Path:
    """The CA as a file in `folder`, for clients that take a path (locust's processes)."""
    path = folder / CA_FILE_NAME
    path.write_text(pem if pem.endswith("\n") else pem + "\n")
    return path


def pinned_key(url: str, verify: ssl.SSLContext) -> str:
    """The gateway's public key as Chromium pins one (base64 of its SPKI's SHA-256), read over a
    connection verified by `verify` (the CA's context).

    Chromium takes no CA file of its own; given this with --ignore-certificate-errors-spki-list
    it accepts that key, which the CA certified, and nothing else.
    """
    import base64
    import hashlib
    import socket
    from urllib.parse import urlsplit

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    parts = urlsplit(url)
    try:
        with (
            socket.create_connection((parts.hostname, parts.port or 443), timeout=10) as raw,
            verify.wrap_socket(raw, server_hostname=parts.hostname) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError as exc:  # ssl.SSLError included: a certificate the CA did not sign
        raise GatewayAccessError(f"the gateway {url} was not verified by its CA: {exc}") from None
    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()
