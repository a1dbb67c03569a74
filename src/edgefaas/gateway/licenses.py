"""Plans, licenses and the tokens callers present (``Authorization: Bearer <token>``).

Token format (version 1)::

    efl1.<base64url(JSON claims)>.<base64url(signature)>

with claims ``{"alg", "kid", "lic", "iat"}`` and the signature over the first two parts.
The signature is made by a TokenSigner: ParsecSigner ("ES256", an ECDSA key held in Parsec,
so the private key never exists outside the service; tamper-proof tokens) where
the gateway runs next to Parsec, as on a SONiC switch, or HmacSigner (HMAC-SHA256, a random
key in the data dir) elsewhere. A verifier accepts only its own algorithm, so a token
cannot pick a weaker one; tokens made by one signer do not verify under the other.

Verification is stateless (no lookup to tell a forged token from a real one), then the
license is looked up (cached) to check it still exists and is not revoked: revoking one
license needs no key rotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from .errors import ApiError
from .ledger import MICROS

TOKEN_PREFIX = "efl1"


def _micros(amount: float | int | str) -> int:
    """Currency units to integer millionths, rounded half up (floats never accumulate)."""
    return int((Decimal(str(amount)) * MICROS).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def money(micros: int) -> float:
    return round(micros / MICROS, 6)


@dataclass(frozen=True)
class Plan:
    """What a license pays: a price per call, a price per second of function time, and a quota."""

    name: str
    price_per_call_micros: int = 0
    price_per_second_micros: int = 0
    quota_calls: int | None = None  # None: no quota
    quota_period_s: int = 86_400
    description: str = ""

    def price(self, duration_us: int) -> int:
        """The amount, in micros, of one call that ran ``duration_us`` microseconds."""
        per_time = (self.price_per_second_micros * duration_us + MICROS // 2) // MICROS
        return self.price_per_call_micros + per_time

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "price_per_call": money(self.price_per_call_micros),
            "price_per_second": money(self.price_per_second_micros),
            "quota": None
            if self.quota_calls is None
            else {"calls": self.quota_calls, "period_s": self.quota_period_s},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        quota = data.get("quota")
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            price_per_call_micros=_micros(data.get("price_per_call", 0)),
            price_per_second_micros=_micros(data.get("price_per_second", 0)),
            quota_calls=None if quota is None else int(quota["calls"]),
            quota_period_s=86_400 if quota is None else int(quota["period_s"]),
        )


# Seeded into a new store; operators add their own with POST /system/plans.
DEFAULT_PLANS = (
    Plan("free", quota_calls=1000, quota_period_s=86_400, description="1000 calls a day, no charge"),
    Plan(
        "standard",
        price_per_call_micros=100,  # 0.0001 per call
        price_per_second_micros=20,  # 0.00002 per second of function time
        description="pay per call and per second of function time, no quota",
    ),
)


@dataclass(frozen=True)
class License:
    id: str
    name: str
    plan: str
    created_at: float
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "plan": self.plan,
            "created_at": iso_time(self.created_at),
            "revoked": self.revoked,
        }


def iso_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# -- signing -----------------------------------------------------------------------------------


class TokenSigner(ABC):
    algorithm: str  # written into every token; a verifier refuses any other
    key_id: str

    @abstractmethod
    def sign(self, message: bytes) -> bytes: ...

    @abstractmethod
    def verify(self, message: bytes, signature: bytes) -> bool: ...


class HmacSigner(TokenSigner):
    algorithm = "HS256"

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("an HMAC license key must be at least 32 bytes")
        self._key = key
        self.key_id = hashlib.sha256(b"edgefaas-license-key:" + key).hexdigest()[:12]

    def sign(self, message: bytes) -> bytes:
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def verify(self, message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(message), signature)


class ParsecSigner(TokenSigner):
    """ES256 (ECDSA P-256, SHA-256) with the private key held in Parsec: it never leaves the service.

    The key (`key_name`, made on first use) belongs to the gateway's own Parsec identity (its
    Unix user under the UnixPeerCredentials authenticator). Signing asks Parsec; verifying
    needs only the public key, exported once, so a call costs no round trip to the service.
    A token is verified in full the first time it is seen; the exact bytes that verified are
    then remembered (a bounded LRU), so a caller's repeated calls cost a dictionary lookup and
    any edited token is a different key and is verified afresh.
    """

    algorithm = "ES256"
    CACHE_SIZE = 4096

    def __init__(self, client: Any, key_name: str = "edgefaas-license") -> None:
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        from edgefaas.parsec.errors import ParsecError

        self._client = client
        self._key = key_name
        if key_name not in {key.name for key in client.list_keys()}:
            try:
                client.generate_ecc_sign_key(key_name)
            except ParsecError:  # another replica made it first: use that one
                if key_name not in {key.name for key in client.list_keys()}:
                    raise
        spki = client.export_public_key(key_name, "der")
        self._public = load_der_public_key(spki)
        self.key_id = hashlib.sha256(spki).hexdigest()[:12]
        self._verified: dict[bytes, None] = {}
        self._lock = threading.Lock()

    def sign(self, message: bytes) -> bytes:
        # r || s, as Parsec returns it and as JOSE's ES256 writes it.
        return self._client.sign_hash(self._key, hashlib.sha256(message).digest())

    def verify(self, message: bytes, signature: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        from edgefaas.parsec.der import ecdsa_raw_to_der

        if len(signature) != 64:
            return False
        seen = message + b"." + signature
        with self._lock:
            if seen in self._verified:
                self._verified[seen] = self._verified.pop(seen)  # most recently used last
                return True
        try:
            self._public.verify(ecdsa_raw_to_der(signature), message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        with self._lock:
            self._verified[seen] = None
            while len(self._verified) > self.CACHE_SIZE:
                self._verified.pop(next(iter(self._verified)))
        return True


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(signer: TokenSigner, license_id: str, issued_at: float | None = None) -> str:
    claims = {
        "alg": signer.algorithm,
        "kid": signer.key_id,
        "lic": license_id,
        "iat": int(issued_at or time.time()),
    }
    signed = f"{TOKEN_PREFIX}.{_b64(json.dumps(claims, separators=(',', ':'), sort_keys=True).encode())}"
    return f"{signed}.{_b64(signer.sign(signed.encode()))}"


class InvalidToken(Exception):
    pass


def read_token(signer: TokenSigner, token: str) -> str:
    """The license id in a genuine token; InvalidToken for anything forged, edited or malformed."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise InvalidToken("not an EdgeFaaS license token")
    try:
        signature = _unb64(parts[2])
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed token signature") from None
    if not signer.verify(f"{parts[0]}.{parts[1]}".encode("ascii", errors="replace"), signature):
        raise InvalidToken("token signature does not verify")
    try:
        claims = json.loads(_unb64(parts[1]))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed token claims") from None
    if (
        not isinstance(claims, dict)
        or claims.get("alg") != signer.algorithm
        or not isinstance(claims.get("lic"), str)
    ):
        raise InvalidToken("token claims are not acceptable")
    return claims["lic"]


# -- storage -----------------------------------------------------------------------------------


class LicenseStore(ABC):
    """Plans and licenses. SqliteLicenseStore fills it; a PostgreSQL one would fill the same."""

    @abstractmethod
    def add_plan(self, plan: Plan) -> bool:
        """False if a plan of that name exists (plans never change: past bills stay explainable)."""

    @abstractmethod
    def plan(self, name: str) -> Plan | None: ...

    @abstractmethod
    def plans(self) -> list[Plan]: ...

    @abstractmethod
    def add_license(self, license: License) -> None: ...

    @abstractmethod
    def license(self, license_id: str) -> License | None: ...

    @abstractmethod
    def licenses(self) -> list[License]: ...

    @abstractmethod
    def revoke(self, license_id: str, when: float) -> bool: ...

    def close(self) -> None:  # noqa: B027 - optional
        pass


class SqliteLicenseStore(LicenseStore):
    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS plans (
        name TEXT PRIMARY KEY, description TEXT NOT NULL, price_per_call_micros INTEGER NOT NULL,
        price_per_second_micros INTEGER NOT NULL, quota_calls INTEGER, quota_period_s INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS licenses (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, plan TEXT NOT NULL REFERENCES plans (name),
        created_at REAL NOT NULL, revoked_at REAL
    );
    """

    def __init__(self, path: Path, seed_plans: tuple[Plan, ...] = DEFAULT_PLANS) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(self._SCHEMA)
        self._lock = threading.Lock()
        if not self.plans():
            for plan in seed_plans:
                self.add_plan(plan)

    def add_plan(self, plan: Plan) -> bool:
        with self._lock:
            cursor = self._conn.execute(
                "INSERT OR IGNORE INTO plans VALUES (?, ?, ?, ?, ?, ?)",
                (
                    plan.name,
                    plan.description,
                    plan.price_per_call_micros,
                    plan.price_per_second_micros,
                    plan.quota_calls,
                    plan.quota_period_s,
                ),
            )
            return cursor.rowcount == 1

    def plan(self, name: str) -> Plan | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT name, price_per_call_micros, price_per_second_micros, quota_calls, quota_period_s,"
                " description FROM plans WHERE name = ?",
                (name,),
            ).fetchone()
        return Plan(*row) if row else None

    def plans(self) -> list[Plan]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, price_per_call_micros, price_per_second_micros, quota_calls, quota_period_s,"
                " description FROM plans ORDER BY name"
            ).fetchall()
        return [Plan(*row) for row in rows]

    def add_license(self, license: License) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO licenses VALUES (?, ?, ?, ?, ?)",
                (license.id, license.name, license.plan, license.created_at, license.revoked_at),
            )

    def license(self, license_id: str) -> License | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT id, name, plan, created_at, revoked_at FROM licenses WHERE id = ?", (license_id,)
            ).fetchone()
        return License(*row) if row else None

    def licenses(self) -> list[License]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, name, plan, created_at, revoked_at FROM licenses ORDER BY created_at, id"
            ).fetchall()
        return [License(*row) for row in rows]

    def revoke(self, license_id: str, when: float) -> bool:
        with self._lock:
            cursor = self._conn.execute(
                "UPDATE licenses SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (when, license_id)
            )
            return cursor.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# -- the authority the gateway asks ------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """A verified license and its plan: who pays for a call."""

    license: License
    plan: Plan


class LicenseAuthority:
    def __init__(self, store: LicenseStore, signer: TokenSigner) -> None:
        self.store = store
        self.signer = signer
        # license id -> Caller; a token verified once costs a dict lookup afterwards.
        self._cache: dict[str, Caller | None] = {}

    def issue(self, name: str, plan_name: str) -> tuple[License, str]:
        if self.store.plan(plan_name) is None:
            raise ApiError(404, f"no plan named {plan_name!r} (GET /system/plans lists them)")
        license = License(id=f"lic_{secrets.token_hex(8)}", name=name, plan=plan_name, created_at=time.time())
        self.store.add_license(license)
        return license, make_token(self.signer, license.id, license.created_at)

    def revoke(self, license_id: str) -> bool:
        revoked = self.store.revoke(license_id, time.time())
        self._cache.pop(license_id, None)
        return revoked

    def caller(self, license_id: str) -> Caller | None:
        if license_id in self._cache:
            return self._cache[license_id]
        found = self.store.license(license_id)
        plan = self.store.plan(found.plan) if found else None
        caller = Caller(found, plan) if found and plan and not found.revoked else None
        self._cache[license_id] = caller
        return caller

    def authorize(self, authorization: str | None, public: bool) -> Caller | None:
        """The paying caller, or None for an anonymous call of a public function.

        No credentials: 401 (unless public). A token that is forged, edited, or names an
        unknown or revoked license: 403, public function or not.
        """
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            if public:
                return None
            raise ApiError(
                401,
                "a license is required: send Authorization: Bearer <token>",
                {"WWW-Authenticate": "Bearer"},
            )
        try:
            license_id = read_token(self.signer, token.strip())
        except InvalidToken as exc:
            raise ApiError(403, f"license token refused: {exc}") from None
        caller = self.caller(license_id)
        if caller is None:
            raise ApiError(403, "license token refused: the license is unknown or revoked")
        return caller
