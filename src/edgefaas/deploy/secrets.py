"""Secrets the operator's machine keeps for a site (the K3S token, the enrollment key).

Made on first use in a file only its owner reads, so that every later run, from this
machine, derives the same values; a value given in host data wins over the file.

Each site (edgefaas.deploy.sites) is a cluster of its own with secrets of its own: the default
site `edge` keeps the files' own names, any other site the name with `.<site>` after it. The one
secret two sites share is an edge site's credential at its cloud (`site_credential`).

A dry run (`pyinfra --dry`) makes no file: where there is none yet it plans with a
placeholder that cannot pass for a secret, and says so.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from pyinfra import logger
from pyinfra.api.exceptions import DeployError

from edgefaas.deploy.dry_run import is_dry_run
from edgefaas.deploy.settings import setting
from edgefaas.deploy.sites import EDGE_SITE, site_of

# Long enough for any min_length asked here, and not hex like the real ones.
DRY_RUN_PLACEHOLDER = "-".join(["DRY-RUN-PLACEHOLDER-NOT-A-SECRET"] * 2)
_announced: set[Path] = set()


def site_secret(given: object, path_text: str, what: str, device: str, min_length: int = 1) -> str:
    """`given` if set, else the contents of the file at `path_text`, made (0600) if absent.

    A file shorter than `min_length` fails `device`'s deploy, naming `what` and the file.
    """
    if given:
        return str(given)
    path = Path(os.path.expanduser(path_text))
    if not path.exists():
        if is_dry_run():
            if path not in _announced:
                _announced.add(path)
                logger.warning(
                    f"--dry: no {what} in {path} yet: planned with a placeholder, not a secret; "
                    "a real run makes the file"
                )
            return DRY_RUN_PLACEHOLDER
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two hosts planned at once must not each write a different secret.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
    value = path.read_text().strip()
    if len(value) < max(min_length, 1):
        raise DeployError(f"{device}: the {what} in {path} is {'empty' if not value else 'too short'}")
    return value


def for_site(current: Any, path_text: str) -> str:
    """The file of `current`'s site for the secret file `path_text`."""
    site = site_of(current)
    return path_text if site == EDGE_SITE else f"{path_text}.{site}"


def cluster_token(current: Any) -> str:
    """The K3S token of host `current`'s site: host data `k3s_token`, else the file `k3s_token_file`."""
    path = for_site(current, str(current.data.k3s_token_file))
    return site_secret(current.data.get("k3s_token"), path, "K3S token", current.name)


def enrollment_key(current: Any) -> bytes:
    """The key every device's enrollment secret derives from: host data, else the operator's file."""
    given = setting(current, "nodeauth_enrollment_key")
    path = for_site(current, str(setting(current, "nodeauth_enrollment_key_file")))
    return site_secret(given, path, "enrollment key", current.name, min_length=32).encode()


def _secrets_dir(current: Any) -> Path:
    return Path(os.path.expanduser(str(setting(current, "edgefaas_secrets_dir"))))


def gateway_secret(current: Any, name: str, what: str, given: object = None) -> str:
    """A secret every gateway of the site shares (admin password, license key, database and queue
    credentials): `given` if set, else the file `name` in `edgefaas_secrets_dir`, made on first use."""
    path = for_site(current, str(_secrets_dir(current) / name))
    return site_secret(given, path, what, current.name, min_length=16)


def site_credential(current: Any, edge_site: str) -> str:
    """The credential edge site `edge_site` proves itself with to its cloud: read by the cloud's
    deploy (its sites file) and by that edge's (its gateways' credential file), from one file."""
    path = _secrets_dir(current) / f"site-credential.{edge_site}"
    return site_secret(None, str(path), f"site credential of {edge_site}", current.name, min_length=16)
