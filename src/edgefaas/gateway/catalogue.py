"""The function catalogue a cloud publishes to its edge sites: signed entries, kept and served
by version.

One entry per function, replaced by a newer version at each publish, update or removal (a
removal stays as an entry with no spec, so an edge that was away learns of it). Versions come
from one counter for the whole catalogue, so an edge asks "everything after version N" and
misses nothing. What is signed is a small canonical JSON payload:

    {"function", "version", "publisher", "sites", "removed", "spec_sha256", "code_sha256"}

with the digest of the deploy spec (canonical JSON, code included) and of the code alone, so
an entry an edge is no longer placed at can say so without carrying the code. The signature
is ES256 by the cloud's catalogue key: held in Parsec (``--license-signer parsec``), else a
P-256 key file in the data dir. An edge holds only the public key: an entry edited anywhere
after signing (the cloud's database, the wire) does not verify, and it refuses it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from .config import GatewaySettings
from .database import Database
from .licensing.tokens import Es256Verifier, TokenSigner

# The Parsec key name, beside the license signer's "edgefaas-license".
PARSEC_KEY = "edgefaas-catalogue"
LOCAL_KEY_FILE = "catalogue-key.pem"
_LOCK_KEY = 0x6566636174616C67  # pg_advisory_xact_lock: one publisher at a time ("efcatalg")


def canonical(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def catalogue_signer(settings: GatewaySettings) -> TokenSigner:
    """The cloud's catalogue signer: an ES256 key in Parsec where licenses are signed there,
    else a P-256 key file in the data dir (an HMAC key would not do: edges verify with a public key)."""
    if settings.license_signer == "parsec":
        from edgefaas.parsec.client import ParsecClient

        from .licensing.tokens import ParsecSigner

        return ParsecSigner(ParsecClient(settings.parsec_endpoint), key_name=PARSEC_KEY)
    from .licensing.es256_key import LocalEs256Signer

    return LocalEs256Signer(settings.data_dir / LOCAL_KEY_FILE)


@dataclass(frozen=True)
class Entry:
    """One function's catalogue entry as it travels: the signed payload, its signature, the spec."""

    function: str
    version: int
    payload: str  # base64url of the canonical payload JSON
    signature: str  # base64url of r || s
    spec: dict[str, Any] | None  # FunctionSpec.to_json(), code included; None when withdrawn

    def to_json(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "version": self.version,
            "payload": self.payload,
            "signature": self.signature,
            "spec": self.spec,
        }

    @classmethod
    def from_json(cls, data: Any) -> Entry:
        if not isinstance(data, dict):
            raise Refused("malformed", "an entry is not a JSON object")
        try:
            spec = data["spec"]
            entry = cls(str(data["function"]), int(data["version"]), str(data["payload"]),
                        str(data["signature"]), spec)  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise Refused("malformed", f"an entry lacks a field or has a wrong type: {exc}") from None
        if spec is not None and not isinstance(spec, dict):
            raise Refused("malformed", "the entry's spec is not a JSON object")
        return entry


class Refused(Exception):
    """An entry an edge will not deploy: ``reason`` a short label (for the metric), the message why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    function: str
    version: int
    sites: tuple[str, ...]
    removed: bool
    spec: dict[str, Any] | None


def verify(entry: Entry, verifier: Es256Verifier, publisher: str) -> Verified:
    """The entry's signed content, once everything in it checks out; Refused naming what does not."""
    try:
        payload_bytes = unb64(entry.payload)
        signature = unb64(entry.signature)
    except (binascii.Error, ValueError):
        raise Refused("malformed", "the payload or signature is not base64url") from None
    if not verifier.verify(payload_bytes, signature):
        raise Refused("bad_signature", "the signature does not verify with the cloud's catalogue key")
    try:
        payload = json.loads(payload_bytes)
        sites = tuple(payload["sites"])
        removed = bool(payload["removed"])
        signed_function, signed_version = payload["function"], payload["version"]
        spec_digest, code_digest, signed_by = (
            payload["spec_sha256"],
            payload["code_sha256"],
            payload["publisher"],
        )
    except (ValueError, KeyError, TypeError):
        raise Refused("malformed", "the signed payload is not a catalogue payload") from None
    if (signed_function, signed_version) != (entry.function, entry.version):
        raise Refused(
            "mismatch",
            f"the signature is for {signed_function!r} version {signed_version}, "
            f"not {entry.function!r} version {entry.version} (an old entry replayed?)",
        )
    if signed_by != publisher:
        raise Refused("mismatch", f"the entry was signed for publisher {signed_by!r}, not {publisher!r}")
    spec = entry.spec
    if spec is not None:
        code = spec.get("code")
        if (sha256(code.encode()) if isinstance(code, str) else "") != code_digest:
            raise Refused("tampered", "the function's code does not match its signed digest")
        if sha256(canonical(spec)) != spec_digest:
            raise Refused("tampered", "the deploy spec does not match its signed digest")
        if spec.get("service") != entry.function:
            raise Refused("tampered", "the spec names another function than the signed one")
    return Verified(entry.function, entry.version, sites, removed, spec)


class CatalogueStore:
    """The cloud's catalogue in its database (table ``catalogue``), signed as it is written."""

    def __init__(self, db: Database, signer: TokenSigner, publisher: str) -> None:
        if signer.algorithm != "ES256":
            raise ValueError("the catalogue needs an ES256 signer: edges verify it with a public key")
        self.db = db
        self.signer = signer
        self.publisher = publisher

    @property
    def public_key(self) -> bytes:
        key = getattr(self.signer, "public_key", None)
        assert isinstance(key, bytes)
        return key

    def publish(self, function: str, sites: list[str], spec: dict[str, Any] | None) -> int | None:
        """Sign and store ``function``'s new entry (``spec`` None: removed); its version.

        None when there is nothing to tell any site: a function never placed at a site
        removed or updated without a placement."""
        with self.db.transaction() as tx:
            if self.db.dialect == "postgresql":
                tx.execute("SELECT pg_advisory_xact_lock(?)", (_LOCK_KEY,))
            row = tx.execute("SELECT ever_sites FROM catalogue WHERE function = ?", (function,)).fetchone()
            ever = sorted(set(json.loads(row[0]) if row else []) | set(sites))
            if not ever:
                return None
            (latest,) = tx.execute("SELECT COALESCE(MAX(version), 0) FROM catalogue").fetchone()
            version = int(latest) + 1
            code = (spec or {}).get("code")
            payload = canonical(
                {
                    "function": function,
                    "version": version,
                    "publisher": self.publisher,
                    "sites": sites,
                    "removed": spec is None,
                    "spec_sha256": sha256(canonical(spec)) if spec is not None else "",
                    # An image's function has no code here: its digest is empty, as signed.
                    "code_sha256": sha256(code.encode()) if isinstance(code, str) else "",
                }
            )
            # Signed inside the transaction: a version is never stored without its signature.
            signature = self.signer.sign(payload)
            stored_spec = None if spec is None else json.dumps(spec)
            values = (version, json.dumps(sites), json.dumps(ever), stored_spec, b64(payload), b64(signature))
            if row:
                tx.execute(
                    "UPDATE catalogue SET version = ?, sites = ?, ever_sites = ?, spec = ?, payload = ?,"
                    " signature = ?, published_at = ? WHERE function = ?",
                    (*values, time.time(), function),
                )
            else:
                tx.execute(
                    "INSERT INTO catalogue (version, sites, ever_sites, spec, payload, signature,"
                    " published_at, function) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, time.time(), function),
                )
            return version

    def feed(self, site: str, since: int) -> tuple[int, list[Entry]]:
        """(the catalogue's latest version, every entry newer than ``since`` that concerns ``site``).

        An entry concerns a site that it names now or named once; to a site it no longer names it
        goes without its spec, which then stays with the sites it is for."""
        with self.db.transaction(write=False) as tx:
            (latest,) = tx.execute("SELECT COALESCE(MAX(version), 0) FROM catalogue").fetchone()
            rows = tx.execute(
                "SELECT function, version, sites, ever_sites, spec, payload, signature FROM catalogue"
                " WHERE version > ? ORDER BY version",
                (since,),
            ).fetchall()
        entries = []
        for function, version, sites, ever, spec, payload, signature in rows:
            if site not in json.loads(ever):
                continue
            shown = json.loads(spec) if spec is not None and site in json.loads(sites) else None
            entries.append(Entry(function, int(version), payload, signature, shown))
        return int(latest), entries

    def entries(self) -> list[dict[str, Any]]:
        """What is published, for the cloud's status: function, version, sites, removed."""
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT function, version, sites, spec IS NULL FROM catalogue ORDER BY function"
            ).fetchall()
        return [
            {"function": f, "version": int(v), "sites": json.loads(s), "removed": bool(r)}
            for f, v, s, r in rows
        ]
