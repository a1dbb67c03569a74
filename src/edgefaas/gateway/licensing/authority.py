"""The license authority: for one call, which license pays and on which plan, or why none does.

Token verification is stateless (no lookup to tell a forged token from a real one); the
license it names is then looked up (cached) to check it still exists and is not revoked, so
revoking one license needs no key rotation. Prices come from the Plan; quotas are
``QuotaGate``'s, which counts calls per Caller.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from ..database import StorageUnavailable
from ..errors import ApiError
from .plans import License, Plan
from .store import LicenseStore
from .tokens import Es256Verifier, InvalidToken, TokenSigner, make_token, read_token


@dataclass(frozen=True)
class Caller:
    """A verified license and its plan: who pays for a call."""

    license: License
    plan: Plan


class LicenseAuthority:
    # How long a license looked up stays cached: a revocation made through another gateway
    # sharing the store takes effect here within this many seconds.
    CACHE_SECONDS = 5.0

    def __init__(self, store: LicenseStore, signer: TokenSigner) -> None:
        self.store = store
        self.signer = signer
        # license id -> (Caller, when looked up); a token verified once costs a dict lookup afterwards.
        self._cache: dict[str, tuple[Caller | None, float]] = {}
        # kid -> the verifier of another gateway's ES256 key (published in the shared store).
        self._peers: dict[str, Es256Verifier] = {}
        self._refreshing: set[str] = set()
        public_key = getattr(signer, "public_key", None)
        if isinstance(public_key, bytes):
            store.publish_key(signer.key_id, signer.algorithm, public_key)

    def peer(self, kid: str) -> Es256Verifier | None:
        """The verifier for another gateway's kid, from the store (kept once found: keys never change)."""
        if kid not in self._peers:
            found = self.store.verification_key(kid)
            if found is None or found[0] != "ES256":
                return None
            verifier = Es256Verifier(found[1])
            if verifier.key_id != kid:  # a kid is the hash of its key: a row that lies is not used
                return None
            self._peers[kid] = verifier
        return self._peers[kid]

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
        """The license's Caller, or None if it is unknown or revoked.

        A cached answer older than CACHE_SECONDS is still given while a thread looks the license
        up again, so a call never waits on the store (nor hangs while the database is away) for
        a license it has seen; only a license not seen before is looked up in line.
        """
        cached = self._cache.get(license_id)
        if cached is None:
            return self._lookup(license_id)
        if time.monotonic() - cached[1] >= self.CACHE_SECONDS and license_id not in self._refreshing:
            self._refreshing.add(license_id)
            threading.Thread(target=self._refresh, args=(license_id,), daemon=True).start()
        return cached[0]

    def _lookup(self, license_id: str) -> Caller | None:
        looked_up = time.monotonic()
        found = self.store.license(license_id)
        plan = self.store.plan(found.plan) if found else None
        caller = Caller(found, plan) if found and plan and not found.revoked else None
        self._cache[license_id] = (caller, looked_up)
        return caller

    def _refresh(self, license_id: str) -> None:
        try:
            self._lookup(license_id)
        except StorageUnavailable:
            pass  # the cached answer stands until the database answers again
        finally:
            self._refreshing.discard(license_id)

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
            license_id = read_token(self.signer, token.strip(), self.peer)
        except InvalidToken as exc:
            raise ApiError(403, f"license token refused: {exc}") from None
        caller = self.caller(license_id)
        if caller is None:
            raise ApiError(403, "license token refused: the license is unknown or revoked")
        return caller
