"""An edge following its cloud's catalogue: pull what changed, verify each entry, deploy it.

The edge asks ``GET /sites/catalogue?since=N`` (its site credential) and goes through the
entries in version order. An entry that verifies with the cloud's public key and names this
site is deployed (or updated) through the backend, with ``edgefaas.io/catalogue-version`` added
to its annotations; one that no longer names it, or is removed, removes the function if the
catalogue put it here. An entry that does not verify, or that would replace a function this
site's admin deployed, is refused: logged with the reason, counted in
``edgefaas_catalogue_refused_total{reason}`` and listed in ``GET /system/sites``; what the edge
serves stays as it was. Only a backend that cannot be reached stops a round before its end
(the entry is tried again next round); the version reached is kept in the database, so a
restarted edge does not start over.

While the cloud cannot be reached the edge goes on serving what it deployed last (the
backend keeps it) and keeps asking; a publish made meanwhile reaches it on the first answer.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool

from edgefaas.backends.base import (
    Backend,
    BackendError,
    BackendUnreachable,
    FunctionExists,
    FunctionNotFound,
    FunctionSpec,
)

from .catalogue import Entry, Refused, Verified, verify
from .database import Database, StorageUnavailable
from .licensing.es256_key import spki_from_pem
from .licensing.tokens import Es256Verifier
from .registry import FunctionRegistry
from .sites import ROUND_TIMEOUT_S, SiteSettings
from .usage import read_state, write_state

log = logging.getLogger("edgefaas.gateway.catalogue")

CATALOGUE_ANNOTATION = "edgefaas.io/catalogue-version"
VERSION_KEY = "catalogue_version"
REFUSALS_KEPT = 50


class CatalogueFollower:
    def __init__(
        self,
        settings: SiteSettings,
        db: Database,
        backend: Backend,
        registry: FunctionRegistry,
        client: httpx.AsyncClient,
    ) -> None:
        assert settings.catalogue_key_pem is not None
        try:
            self.verifier = Es256Verifier(spki_from_pem(settings.catalogue_key_pem))
        except ValueError as exc:
            raise ValueError(f"the cloud's catalogue key: {exc}") from None
        self.settings = settings
        self.db = db
        self.backend = backend
        self.registry = registry
        self.client = client
        self.version = int(read_state(db, VERSION_KEY) or 0)
        self.reachable: bool | None = None
        # Whether the last round got any answer at all (None before the first): False only when
        # the network failed it (a WAN cut), not when the cloud answered badly.
        self.answering: bool | None = None
        self.last_contact: float | None = None
        self.last_error: str | None = None
        self.refused: collections.deque[dict[str, Any]] = collections.deque(maxlen=REFUSALS_KEPT)
        self.refusals: dict[str, int] = collections.defaultdict(int)
        self.deployed: dict[str, int] = {}

    async def poll(self) -> None:
        """One round: ask the cloud what changed since the version reached, apply it."""
        try:
            response = await self.client.get(
                "/sites/catalogue",
                params={"since": self.version},
                headers={"authorization": self.settings.auth_header()},
                timeout=ROUND_TIMEOUT_S,
            )
        except httpx.HTTPError as exc:
            self.answering = False
            self._unreachable(
                f"cannot reach the cloud at {self.settings.cloud_url}: {exc or type(exc).__name__}"
            )
            return
        self.answering = True
        if response.status_code != 200:
            self._unreachable(f"the cloud answered {response.status_code}: {_error(response)}")
            return
        try:
            data = response.json()
            latest, entries = int(data["version"]), list(data["entries"])
        except (ValueError, KeyError, TypeError):
            self._unreachable("the cloud's catalogue answer is not a catalogue")
            return
        self.reachable, self.last_contact, self.last_error = True, time.time(), None
        for raw in entries:
            function = raw.get("function") if isinstance(raw, dict) else None
            version = raw.get("version") if isinstance(raw, dict) else None
            try:
                entry = Entry.from_json(raw)
                checked = verify(entry, self.verifier, self.settings.cloud_site)
                await run_in_threadpool(self._apply, checked)
            except Refused as exc:
                self._refuse(function, version, exc)
            except (BackendUnreachable, StorageUnavailable) as exc:
                log.warning("catalogue: %s version %s not applied yet: %s", function, version, exc)
                self.last_error = f"{function} version {version} not applied yet: {exc}"
                return
            if isinstance(version, int) and version > self.version:
                await run_in_threadpool(self._reached, version)
        if latest > self.version:
            await run_in_threadpool(self._reached, latest)

    def _reached(self, version: int) -> None:
        write_state(self.db, VERSION_KEY, str(version))
        self.version = version

    def _unreachable(self, why: str) -> None:
        if self.reachable is not False:
            log.warning("catalogue: %s; serving the functions verified last", why)
        self.reachable, self.last_error = False, why

    def _refuse(self, function: Any, version: Any, exc: Refused) -> None:
        log.warning("catalogue: refused %s version %s (%s): %s", function, version, exc.reason, exc)
        self.refusals[exc.reason] += 1
        self.refused.appendleft(
            {
                "function": function,
                "version": version,
                "reason": exc.reason,
                "error": str(exc),
                "at": time.time(),
            }
        )

    def _apply(self, entry: Verified) -> None:
        name = entry.function
        try:
            current = self.backend.get(name)
        except FunctionNotFound:
            current = None
        from_catalogue = current is not None and CATALOGUE_ANNOTATION in current.spec.annotations
        if current is not None and not from_catalogue:
            raise Refused(
                "local_function",
                f"function {name!r} was deployed at this site by its admin; "
                "the catalogue does not replace it",
            )
        if entry.removed or self.settings.name not in entry.sites:
            if from_catalogue:
                self.backend.delete(name)
                self.registry.forget(name)
                self.deployed.pop(name, None)
                log.info("catalogue: %s version %d withdrawn from this site: removed", name, entry.version)
            return
        if entry.spec is None:
            raise Refused("malformed", "the entry names this site but carries no spec")
        annotations = {**(entry.spec.get("annotations") or {}), CATALOGUE_ANNOTATION: str(entry.version)}
        try:
            spec = FunctionSpec.from_json({**entry.spec, "annotations": annotations})
        except (ValueError, TypeError, KeyError) as exc:
            raise Refused("invalid_spec", f"the signed spec is not a deployable function: {exc}") from None
        try:
            try:
                status = self.backend.update(spec) if current else self.backend.deploy(spec)
            except FunctionExists:  # another gateway of this site deployed it a moment ago
                status = self.backend.update(spec)
        except BackendUnreachable:
            raise
        except BackendError as exc:
            raise Refused("deploy_failed", f"the backend could not run it: {exc}") from None
        self.registry.remember(status)
        self.deployed[name] = entry.version
        log.info("catalogue: %s version %d verified and deployed", name, entry.version)

    def status(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "cloud_reachable": self.reachable,
            "last_contact": self.last_contact,
            "last_error": self.last_error,
            "deployed": dict(sorted(self.deployed.items())),
            "refusals": dict(self.refusals),
            "refused": list(self.refused),
        }


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text[:200]))
    except (ValueError, AttributeError):
        return response.text[:200]
