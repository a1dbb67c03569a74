"""Where licenses and the ledger live: a URL picks the database.

``sqlite:///path/to/gateway.db`` (the default: ``<data-dir>/gateway.db``) uses SQLite, fine
for one gateway. ``postgresql://user:password@host:port/dbname`` shares plans, licenses,
the ledger and idempotency keys between every gateway pointed at it (pooled connections).
Either is migrated forward to this release's schema when opened (``migrations``).
"""

from __future__ import annotations

import secrets

from .auth import write_secret_file
from .config import GatewaySettings
from .database import Database, open_database
from .ledger import Ledger, SqlLedger
from .licensing.store import LicenseStore, SqlLicenseStore
from .licensing.tokens import HmacSigner, TokenSigner
from .migrations import migrate


def storage_url(settings: GatewaySettings) -> str:
    return settings.storage_url or f"sqlite://{settings.data_dir / 'gateway.db'}"


def open_migrated(url: str, settings: GatewaySettings | None = None) -> Database:
    """The database at ``url``, migrated to this release's schema (refused if it is newer)."""
    db = open_database(url, settings.ledger_sync if settings else "normal")
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def open_storage(settings: GatewaySettings) -> tuple[LicenseStore, Ledger]:
    """The license store and the ledger on one database; closing the store closes it (after the ledger)."""
    db = open_migrated(storage_url(settings), settings)
    return SqlLicenseStore(db), SqlLedger(db, close_db=False)


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
