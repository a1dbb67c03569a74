"""Admin authentication: HTTP basic auth, user ``admin``, as OpenFaaS's gateway does."""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
from pathlib import Path

from starlette.requests import Request

from .errors import ApiError

ADMIN_USER = "admin"
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="edgefaas"'}


def write_secret_file(path: Path, data: bytes) -> bool:
    """Create ``path`` mode 0600 holding ``data``; False if it already exists (first writer wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return True


def ensure_admin_password(path: Path, given: str | None) -> str:
    """The admin password: ``given`` if set, else the one in ``path``, else a new random one there."""
    if given:
        return given
    if not path.exists():
        write_secret_file(path, (secrets.token_urlsafe(24) + "\n").encode())
    password = path.read_text().strip()
    if not password:
        raise RuntimeError(f"{path} is empty: delete it to have a new admin password made")
    return password


class AdminAuth:
    def __init__(self, password: str) -> None:
        self._expected = f"{ADMIN_USER}:{password}".encode()

    def check(self, request: Request) -> None:
        """Return if the request carries the admin's basic credentials, else raise 401."""
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise ApiError(401, "admin credentials required (HTTP basic auth, user admin)", _CHALLENGE)
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(401, "malformed basic credentials", _CHALLENGE) from None
        # Constant-time: a timing difference must not reveal how much of the password matched.
        if not hmac.compare_digest(given, self._expected):
            raise ApiError(401, "wrong admin credentials", _CHALLENGE)
