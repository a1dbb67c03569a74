"""Secrets the operator's machine keeps for a site (the K3S token, the enrollment key).

Made on first use in a file only its owner reads, so that every later run, from this
machine, derives the same values; a value given in host data wins over the file.

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


def cluster_token(current: Any) -> str:
    """The K3S token of host `current`: host data `k3s_token`, else the file `k3s_token_file`."""
    return site_secret(current.data.get("k3s_token"), current.data.k3s_token_file, "K3S token", current.name)


def enrollment_key(current: Any) -> bytes:
    """The key every device's enrollment secret derives from: host data, else the operator's file."""
    given = setting(current, "nodeauth_enrollment_key")
    path = setting(current, "nodeauth_enrollment_key_file")
    return site_secret(given, path, "enrollment key", current.name, min_length=32).encode()


def gateway_secret(current: Any, name: str, what: str, given: object = None) -> str:
    """A secret every gateway of the site shares (admin password, license key, database and queue
    credentials): `given` if set, else the file `name` in `edgefaas_secrets_dir`, made on first use."""
    path = Path(os.path.expanduser(str(setting(current, "edgefaas_secrets_dir")))) / name
    return site_secret(given, str(path), what, current.name, min_length=16)
