"""The site's OCI registry: what the deploys and the tests share about it.

Debian's ``docker-registry`` (distribution v2) on the K3S server, HTTPS with a certificate
from the blueprint's CA, htpasswd accounts (bcrypt, the one hash distribution accepts). One
account, ``edgefaas``, its password a site secret (edgefaas.deploy.secrets): users push with
it, and every node's K3S pulls with it (registries.yaml ``configs.auth``), because htpasswd
auth cannot tell a pull from a push. No I/O here but bcrypt.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import bcrypt

PORT = 5000
USER = "edgefaas"
PASSWORD_SECRET = "registry-password"  # its file in edgefaas_secrets_dir
CONFIG_DIR = "/etc/edgefaas/registry"
CONFIG = f"{CONFIG_DIR}/config.yml"
HTPASSWD = f"{CONFIG_DIR}/htpasswd"
STORAGE_DIR = "/var/lib/edgefaas/registry"
TLS_CERT = f"{STORAGE_DIR}/tls.crt"
TLS_KEY = f"{STORAGE_DIR}/tls.key"
SERVICE_USER = "docker-registry"  # Debian's package makes this user
TEMPLATES = Path(__file__).resolve().parents[3] / "templates" / "registry"


def htpasswd_line(user: str, password: str, rounds: int = 10) -> str:
    """One htpasswd entry, bcrypt as distribution requires (``$2y$``, the Apache spelling)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds, prefix=b"2b")).decode()
    return f"{user}:$2y${hashed[4:]}\n"


def htpasswd_matches(line: str, user: str, password: str) -> bool:
    """Whether ``line`` (an installed htpasswd) already admits ``user`` with ``password``: a
    re-run keeps the old hash (bcrypt salts differ on every call, so a new one would always change)."""
    name, _, hashed = line.strip().partition(":")
    if name != user or not hashed.startswith(("$2y$", "$2b$")):
        return False
    return bcrypt.checkpw(password.encode(), ("$2b$" + hashed[4:]).encode())


def auth_file(registry: str, user: str, password: str) -> str:
    """containers-auth.json for ``registry`` (host:port): how skopeo is given the account
    without putting the password on a command line, where ps would show it."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {registry: {"auth": token}}}, indent=2) + "\n"


def push_argv(archive: str, tag: str, reference: str, cert_dir: str, authfile: str) -> list[str]:
    """skopeo copying every architecture of the OCI archive's image ``tag`` to ``reference``,
    verifying the registry by the CA in ``cert_dir`` (as ``ca.crt``, skopeo's layout)."""
    return [
        "skopeo",
        "copy",
        "--all",
        # What the registry serves is what was built, digests included: a build's pins stay valid.
        "--preserve-digests",
        "--quiet",
        "--dest-cert-dir",
        cert_dir,
        "--dest-authfile",
        authfile,
        f"oci-archive:{archive}:{tag}",
        f"docker://{reference}",
    ]
