"""A gateway's part in a cloud of sites, in one object the app starts and stops: on the cloud the
catalogue it signs and the usage it rolls up, on an edge the catalogue it follows, the usage it
pushes and the calls it offloads. A gateway that is no site gets an inert one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool

from edgefaas.backends.base import Backend

from .catalogue import CatalogueStore, catalogue_signer
from .catalogue_follower import CATALOGUE_ANNOTATION, CatalogueFollower
from .config import GatewaySettings
from .database import Database, StorageUnavailable
from .errors import ApiError
from .ledger import Ledger
from .offload import Placement
from .registry import FunctionRegistry
from .sites import ROUND_TIMEOUT_S
from .usage import Outbox, SiteUsage

log = logging.getLogger("edgefaas.gateway.sites")
PUSH_BATCH = 500


class Sites:
    def __init__(
        self, settings: GatewaySettings, backend: Backend, registry: FunctionRegistry, ledger: Ledger
    ) -> None:
        self.settings = site = settings.sites
        self.backend = backend
        self.client: httpx.AsyncClient | None = None
        self.catalogue: CatalogueStore | None = None
        self.usage: SiteUsage | None = None
        self.follower: CatalogueFollower | None = None
        self.outbox: Outbox | None = None
        self.push_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        if site is not None:
            db: Database | None = getattr(ledger, "db", None)
            if db is None:
                raise ValueError("a site's gateway keeps its catalogue and usage in its SQL database")
            if site.is_cloud:
                self.catalogue = CatalogueStore(db, catalogue_signer(settings), site.name)
                self.usage = SiteUsage(db, site.name)
            else:
                assert site.cloud_url is not None
                self.client = httpx.AsyncClient(
                    base_url=site.cloud_url,
                    verify=site.client_verify(),
                    # The cloud is reached directly, as the blueprint's WAN routes it: never a proxy.
                    trust_env=False,
                    timeout=httpx.Timeout(max(site.cloud_timeout_s, settings.upstream_timeout), connect=2.0),
                    follow_redirects=False,
                )
                self.follower = CatalogueFollower(site, db, backend, registry, self.client)
                self.outbox = Outbox(db)
        follower = self.follower
        self.placement = Placement(site, self.client, lambda: follower.answering if follower else None)

    async def start(self) -> None:
        if self.follower is not None:
            self._task = asyncio.create_task(self._follow())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.client is not None:
            await self.client.aclose()

    async def _follow(self) -> None:
        assert self.settings is not None and self.follower is not None
        while True:
            try:
                await self.follower.poll()
                await self.push_usage()
            except Exception:  # the next round tries again; the edge serves on meanwhile
                log.exception("sites: a round with the cloud failed")
            await asyncio.sleep(self.settings.poll_s)

    # -- usage ------------------------------------------------------------------------------

    async def push_usage(self) -> None:
        """Number the calls billed here since the last round and push what the cloud lacks."""
        assert self.outbox is not None and self.client is not None and self.settings is not None
        try:
            await run_in_threadpool(self.outbox.fill)
            acked = await run_in_threadpool(self.outbox.acked)
            while True:
                records = await run_in_threadpool(self.outbox.pending, acked, PUSH_BATCH)
                if not records:
                    break
                response = await self.client.post(
                    "/sites/usage",
                    json={"records": [r.to_json() for r in records]},
                    headers={"authorization": self.settings.auth_header()},
                    timeout=ROUND_TIMEOUT_S,
                )
                if response.status_code != 200:
                    self.push_error = f"the cloud answered {response.status_code}: {response.text[:300]}"
                    log.warning("usage push refused: %s", self.push_error)
                    return
                # The cloud's word on what it holds, even below what this site thought: what it
                # lacks (a cloud restored from a backup) is pushed again.
                acked = int(response.json()["acked"])
                await run_in_threadpool(self.outbox.set_acked, acked)
                if acked < records[-1].seq:
                    break
            self.push_error = None
        except (httpx.HTTPError, StorageUnavailable, ValueError, KeyError) as exc:
            self.push_error = f"{type(exc).__name__}: {exc}"

    # -- publishing (cloud) -----------------------------------------------------------------

    def placement_of(self, annotations: dict[str, str]) -> list[str]:
        """The sites a deploy body places its function at; ApiError naming an unknown one."""
        return self.settings.placement(annotations) if self.settings else []

    async def publish(self, name: str, sites: list[str], spec: dict[str, Any] | None) -> int | None:
        """Sign and store the function's catalogue entry (cloud only); its version, if any."""
        if self.catalogue is None:
            return None
        try:
            return await run_in_threadpool(self.catalogue.publish, name, sites, spec)
        except StorageUnavailable as exc:
            raise ApiError(
                503,
                f"function {name!r} is deployed in the cloud but not published to its sites ({exc}); "
                "send the same request again to publish it",
                {"Retry-After": "1"},
            ) from None

    # -- status and metrics -----------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        site = self.settings
        if site is None:
            return {"site": None}
        if site.is_cloud:
            assert self.catalogue is not None and self.usage is not None
            entries = await run_in_threadpool(self.catalogue.entries)
            held = await run_in_threadpool(self.usage.sites)
            return {
                "site": site.name,
                "role": "cloud",
                "sites": {name: {"usage_acked": held.get(name, 0)} for name in sorted(site.known_sites)},
                "catalogue": entries,
            }
        assert self.follower is not None and self.outbox is not None
        statuses = await run_in_threadpool(self.backend.list)
        numbered, last = await run_in_threadpool(self.outbox.counts)
        acked = await run_in_threadpool(self.outbox.acked)
        catalogue = self.follower.status()
        catalogue["deployed"] = {
            s.name: int(s.spec.annotations[CATALOGUE_ANNOTATION])
            for s in statuses
            if CATALOGUE_ANNOTATION in s.spec.annotations
        }
        return {
            "site": site.name,
            "role": "edge",
            "cloud": {"url": site.cloud_url, "site": site.cloud_site},
            "catalogue": catalogue,
            "usage": {"numbered": numbered, "last": last, "acked": acked, "last_error": self.push_error},
            "objectives": {
                name: {"max_inflight": o.max_inflight, "max_latency_ms": o.max_latency_ms}
                for name, o in sorted(site.objectives.items())
            },
        }

    def metrics_text(self) -> str:
        text = self.placement.metrics_text()
        if self.follower is not None:
            lines = [
                "# HELP edgefaas_catalogue_version The cloud catalogue version this edge has reached.",
                "# TYPE edgefaas_catalogue_version gauge",
                f"edgefaas_catalogue_version {self.follower.version}",
                "# HELP edgefaas_catalogue_refused_total Catalogue entries this edge refused, by reason.",
                "# TYPE edgefaas_catalogue_refused_total counter",
            ]
            lines += [
                f'edgefaas_catalogue_refused_total{{reason="{r}"}} {n}'
                for r, n in sorted(self.follower.refusals.items())
            ]
            text += "\n".join(lines) + "\n"
        return text
