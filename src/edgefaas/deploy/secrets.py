"""Secrets the operator's machine keeps for a site (the K3S token, the enrollment key).

Made on first use in a file only its owner reads, so that every later run, from this
machine, derives the same values; a value given in host data wins over the file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pyinfra.api.exceptions import DeployError


def site_secret(given: object, path_text: str, what: str, device: str, min_length: int = 1) -> str:
    """`given` if set, else the contents of the file at `path_text`, made (0600) if absent.

    A file shorter than `min_length` fails `device`'s deploy, naming `what` and the file.
    """
    if given:
        return str(given)
    path = Path(os.path.expanduser(path_text))
    if not path.exists():
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
