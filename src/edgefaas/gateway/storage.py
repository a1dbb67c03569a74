"""Where licenses and the ledger live: a URL picks the implementation.

``sqlite:///path/to/gateway.db`` (the default: ``<data-dir>/gateway.db``) uses SQLite, fine
for one gateway per site. ``postgresql://...`` is the place for larger sites: fill
``LicenseStore`` and ``Ledger`` with a PostgreSQL driver (the SQL carries over; the
ledger's ``INSERT OR IGNORE`` becomes ``ON CONFLICT (call_id) DO NOTHING``).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from .auth import write_secret_file
from .config import GatewaySettings
from .ledger import Ledger, SqliteLedger
from .licensing.store import LicenseStore, SqliteLicenseStore
from .licensing.tokens import HmacSigner, TokenSigner


def storage_path(settings: GatewaySettings) -> Path:
    url = settings.storage_url or f"sqlite://{settings.data_dir / 'gateway.db'}"
    if url.startswith(("postgresql://", "postgres://")):
        raise NotImplementedError("PostgreSQL storage is not implemented yet; use sqlite:///path")
    if not url.startswith("sqlite://"):
        raise ValueError(f"unknown storage URL {url!r}: use sqlite:///path")
    return Path(url.removeprefix("sqlite://"))


def open_storage(settings: GatewaySettings) -> tuple[LicenseStore, Ledger]:
    path = storage_path(settings)
    return SqliteLicenseStore(path), SqliteLedger(path, sync=settings.ledger_sync)


def license_signer(settings: GatewaySettings) -> TokenSigner:
    """Parsec's ES256 signer when settings ask for it; else the HMAC signer, its key from settings
    or <data-dir>/license-key (made on first start, 0600)."""
    if settings.license_signer == "parsec":
        from edgefaas.parsec.client import ParsecClient

        from .licensing.tokens import ParsecSigner

        return ParsecSigner(ParsecClient(settings.parsec_endpoint))
    if settings.license_key:
        return HmacSigner(settings.license_key)
    path = settings.license_key_file
    if not path.exists():
        write_secret_file(path, (secrets.token_hex(32) + "\n").encode())
    return HmacSigner(bytes.fromhex(path.read_text().strip()))
