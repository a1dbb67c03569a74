"""The local backend's secrets: one file per secret under the gateway's data directory, as
OpenFaaS's faasd keeps them (one file per secret, named after it).

Files are 0600 in a 0700 directory (faasd's are world-readable; here only the gateway's user,
which runs the functions, reads them) and replaced whole, so a function never reads half a
value. A function that names secrets gets a directory of its own holding a link to each
(``link_into``), and the runtime reads them there: an updated secret is seen at once, a
removed one is gone.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from .base import SecretExists, SecretNotFound


class SecretFiles:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        # Names are checked against SECRET_NAME_PATTERN by the gateway: no "/" and no "..".
        if "/" in name or name in ("", ".", ".."):
            raise SecretNotFound(name)
        return self.root / name

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_file() and not p.name.startswith("."))

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def create(self, name: str, value: bytes) -> None:
        if self.exists(name):
            raise SecretExists(name)
        self._write(name, value)

    def update(self, name: str, value: bytes) -> None:
        if not self.exists(name):
            raise SecretNotFound(name)
        self._write(name, value)

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            raise SecretNotFound(name) from None

    def _write(self, name: str, value: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        tmp = self.root / f".{name}.{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(value)
            os.replace(tmp, self._path(name))
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def link_into(self, folder: Path, names: tuple[str, ...]) -> None:
        """Make ``folder`` hold a link to each secret in ``names`` and nothing else."""
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        for old in folder.iterdir():
            if old.name not in names:
                old.unlink()
        for name in names:
            link = folder / name
            if not link.is_symlink():
                link.symlink_to(self._path(name).resolve())
