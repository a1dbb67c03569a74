"""Sites: the hosts a host works with.

An inventory may hold several sites: edge sites (SONiC switches and Jetson boards) and a cloud
site (servers of profile `cloud`). Each site is a K3S cluster of its own, with its own K3S server,
gateways, database, Prometheus and registry; the deploys are the same for every site, and each
host's deploy looks up "the K3S server", "the gateways" and the like among the hosts of its own
site only. A site is inventory data, never a fork of the deploy files:

- host data `edgefaas_site` names a host's site (a DNS label, as the gateways' site names are);
- without it a host of profile `cloud` is in site `cloud`, any other in site `edge`.

An inventory without `edgefaas_site` and without `cloud` hosts is one site, as before.
Set `edgefaas_site` in the inventory file's host data, where the inventory check (which runs
before group data is merged) sees it too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pyinfra.api.exceptions import DeployError

EDGE_SITE = "edge"
CLOUD_SITE = "cloud"
CLOUD_PROFILE = "cloud"
# The gateways' own rule for site names (edgefaas.gateway.sites.SITE_NAME_PATTERN).
_SITE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class SiteError(ValueError):
    """A site name the blueprint cannot use; the message names the host and the value."""


def site_name(host_name: str, data: Mapping[str, Any], groups: Iterable[str]) -> str:
    """The site of the host `host_name` with host data `data`, in `groups`."""
    named = data.get("edgefaas_site")
    if named is None:
        return CLOUD_SITE if CLOUD_PROFILE in set(groups) else EDGE_SITE
    if not isinstance(named, str) or not _SITE_NAME.match(named):
        raise SiteError(
            f"{host_name}: edgefaas_site {named!r} is not a site name "
            "(lower-case letters, digits and '-', 63 at most, starting and ending alphanumeric)"
        )
    return named


def site_of(other: Any) -> str:
    """The site of a pyinfra host (the one being deployed or another of the inventory)."""
    try:
        return site_name(other.name, other.data, other.groups)
    except SiteError as exc:
        raise DeployError(str(exc)) from None


class Site:
    """The hosts of one site, read like pyinfra's inventory (iteration, `get_group`), so the deploys
    ask it what they asked the whole inventory before."""

    def __init__(self, name: str, members: Iterable[Any]):
        self.name = name
        self.hosts = list(members)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.hosts)

    def get_group(self, group: str) -> list[Any]:
        return [other for other in self.hosts if group in other.groups]

    def __repr__(self) -> str:
        return f"Site({self.name!r}, {[other.name for other in self.hosts]})"


def site_inventory(current: Any, inventory: Iterable[Any]) -> Site:
    """The hosts of `current`'s site, in inventory order."""
    own = site_of(current)
    return Site(own, (other for other in inventory if site_of(other) == own))


def is_cloud_site(site: Site) -> bool:
    """A cloud site is one made of cloud servers (profile group `cloud`)."""
    return any(CLOUD_PROFILE in other.groups for other in site)


@dataclass(frozen=True)
class Collaboration:
    """How `current`'s site works with the others (Scenario 3.3): its role, the cloud site, and the
    edge sites the cloud serves. Only for an inventory that holds a cloud site."""

    role: str  # "cloud" or "edge"
    name: str
    cloud: Site
    edges: tuple[str, ...]


def collaboration(current: Any, inventory: Iterable[Any]) -> Collaboration | None:
    """`current`'s part in the sites' collaboration; None where the inventory has no cloud site
    (every gateway is then a site alone, as before). One cloud site per inventory."""
    hosts = list(inventory)
    by_site: dict[str, list[Any]] = {}
    for other in hosts:
        by_site.setdefault(site_of(other), []).append(other)
    sites = {name: Site(name, members) for name, members in by_site.items()}
    clouds = [site for site in sites.values() if is_cloud_site(site)]
    if not clouds:
        return None
    if len(clouds) > 1:
        raise DeployError(
            f"{current.name}: the inventory holds {len(clouds)} cloud sites "
            f"({', '.join(site.name for site in clouds)}); the blueprint's edges follow one cloud"
        )
    cloud = clouds[0]
    own = site_of(current)
    edges = tuple(sorted(name for name in sites if name != cloud.name))
    return Collaboration("cloud" if own == cloud.name else "edge", own, cloud, edges)
