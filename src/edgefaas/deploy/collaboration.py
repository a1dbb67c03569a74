"""The gateways' part in cloud-edge collaboration (Scenario 3.3), from the inventory's sites.

Where the inventory holds a cloud site (edgefaas.deploy.sites), every gateway is a site of it:

- the cloud's gateways get `--site-role cloud` and a sites file naming every edge site of the
  inventory with its credential; the catalogue's signing key is made in the cloud's Parsec by the
  deploy, and its public half written beside the site's CA (`/etc/edgefaas/catalogue-key.pem`);
- where the cloud peers with the SD-WAN provider edges (host data `sdwan_peers`, as a switch's),
  its announcer declares the same anycast and function addresses as the edge switches, through
  FRR itself, with its AS prepended `edgefaas_wan_cloud_prepend` times: a WAN client reaches the
  cloud only while no edge switch announces them;
- each edge's gateways get `--site-role edge`, the cloud gateway's URL, their site's credential,
  their objectives (host data `edgefaas_site_objectives`), and the cloud's catalogue key and CA,
  carried from the cloud host by the deploy over its own SSH connections: out of band, never
  fetched from the cloud gateway (an edge trusts no key the network hands it).

Every site keeps its own secrets (edgefaas.deploy.secrets); an edge site's credential is the one
both sides read. The cloud's files are read at plan time when they are there; on a first deploy
they are made by the cloud's operations above the edges' copy, so it reads them at run time.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import StringCommand
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import File, FileContents
from pyinfra.operations import apt, files, python, server
from pyinfra.operations.util import any_changed

from edgefaas.deploy import hosts
from edgefaas.deploy.gateways import first_gateway, gateway_url
from edgefaas.deploy.sdwan_peers import sdwan_peers
from edgefaas.deploy.secrets import site_credential
from edgefaas.deploy.services import keep_running
from edgefaas.deploy.settings import setting
from edgefaas.deploy.sites import Collaboration
from edgefaas.deploy.sonic import RoutingError
from edgefaas.deploy.wan import WanPlan
from edgefaas.nodeauth.tls import CA_PEM

TEMPLATES = Path(__file__).resolve().parents[3] / "templates" / "edgefaas"
FRR_CONF = "/etc/frr/frr.conf"
FRR_DAEMONS = "/etc/frr/daemons"
# On the cloud: the catalogue key's public half, public as the CA beside it.
CATALOGUE_PUBLIC = "/etc/edgefaas/catalogue-key.pem"
# The gateway's name for it in Parsec (edgefaas.gateway.catalogue.PARSEC_KEY; the deploy does not
# import the gateway's package).
PARSEC_KEY = "edgefaas-catalogue"


@dataclass(frozen=True)
class SitePaths:
    """Where a gateway's site files go (its configuration directory)."""

    config_dir: str

    @property
    def sites_file(self) -> str:
        return f"{self.config_dir}/sites.json"

    @property
    def credential(self) -> str:
        return f"{self.config_dir}/site-credential"

    @property
    def objectives(self) -> str:
        return f"{self.config_dir}/objectives.json"

    @property
    def catalogue_key(self) -> str:
        return f"{self.config_dir}/cloud-catalogue-key.pem"

    @property
    def cloud_ca(self) -> str:
        return f"{self.config_dir}/cloud-ca.pem"


def _objectives(current: Any) -> dict[str, dict[str, float]]:
    value = setting(current, "edgefaas_site_objectives") or {}
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise DeployError(
            f"{current.name}: edgefaas_site_objectives must map function names to "
            '{"max_inflight": N, "max_latency_ms": MS}, not ' + repr(value)
        )
    return value


def cloud_gateway(plan: Collaboration) -> Any:
    return first_gateway(plan.cloud)


def cloud_side(plan: Collaboration, paths: SitePaths, user: str, venv: str, signer: str) -> list[Any]:
    """The cloud gateway's sites file and its catalogue key; the ops that change what it runs with."""
    if signer != "parsec":
        raise DeployError(
            f"{host.name}: the cloud site signs its catalogue with a key held in Parsec: set "
            "edgefaas_license_signer = 'parsec' (and parsec_service = True) for the cloud's hosts"
        )
    credentials = {edge: site_credential(host, edge) for edge in plan.edges}
    sites = files.put(
        name=f"Write the edge sites the cloud serves ({', '.join(plan.edges) or 'none'}; 0600)",
        src=StringIO(json.dumps({"sites": credentials}, indent=2, sort_keys=True) + "\n"),
        dest=paths.sites_file,
        user=user,
        group=user,
        mode="600",
    )
    if not host.get_fact(File, path=CATALOGUE_PUBLIC):
        # As the gateway's user: Parsec keys belong to the application that made them.
        cli = f"sudo -u {user} {venv}/bin/edgefaas parsec"
        server.shell(
            name=f"Make the catalogue key {PARSEC_KEY} in Parsec; its public half to {CATALOGUE_PUBLIC}",
            commands=[
                f"{cli} export-public-key {PARSEC_KEY} --format pem >/dev/null 2>&1 || "
                f"{cli} generate-key {PARSEC_KEY} --type ecc-sign || true",
                f"{cli} export-public-key {PARSEC_KEY} --format pem > {CATALOGUE_PUBLIC}.new "
                f"&& chmod 644 {CATALOGUE_PUBLIC}.new && mv {CATALOGUE_PUBLIC}.new {CATALOGUE_PUBLIC}",
            ],
        )
    return [sites]


def _copy_from_cloud(cloud: Any, sources: dict[str, str], user: str) -> Any:
    """Copy files from the cloud host at run time (a first deploy: they are made above this line)."""

    def copy(state: Any, host: Any) -> None:
        for source, dest in sources.items():
            status, output = cloud.run_shell_command(StringCommand("cat", source), _sudo=True)
            text = "\n".join(output.stdout_lines).strip()
            if not status or "BEGIN" not in text:
                raise DeployError(
                    f"{host.name}: cannot read {source} on the cloud host {cloud.name}: "
                    f"{output.stderr or 'empty'}"
                )
            if not host.put_file(StringIO(text + "\n"), dest, remote_temp_filename=None, _sudo=True):
                raise DeployError(f"{host.name}: could not write {dest}")
            host.run_shell_command(
                StringCommand("chown", f"root:{user}", dest, "&&", "chmod", "640", dest), _sudo=True
            )

    return python.call(
        name=f"Copy the cloud's catalogue key and CA from {cloud.name} (out of band)", function=copy
    )


def edge_side(plan: Collaboration, paths: SitePaths, user: str) -> list[Any]:
    """An edge gateway's credential, objectives and the cloud's key and CA; the ops that change
    what it runs with."""
    cloud = cloud_gateway(plan)
    ops = [
        files.put(
            name=f"Install site {plan.name}'s credential at the cloud (0600)",
            src=StringIO(site_credential(host, plan.name) + "\n"),
            dest=paths.credential,
            user=user,
            group=user,
            mode="600",
        ),
        files.put(
            name="Write the functions' objectives past which calls go to the cloud",
            src=StringIO(json.dumps(_objectives(host), indent=2, sort_keys=True) + "\n"),
            dest=paths.objectives,
            user="root",
            group=user,
            mode="640",
        ),
    ]
    sources = {CATALOGUE_PUBLIC: paths.catalogue_key, str(CA_PEM): paths.cloud_ca}
    known = {source: cloud.get_fact(FileContents, path=source) for source in sources}
    if all(known.values()):
        for source, dest in sources.items():
            ops.append(
                files.put(
                    name=f"Install the cloud's {source} as {dest}",
                    src=StringIO("\n".join(known[source]).strip() + "\n"),
                    dest=dest,
                    user="root",
                    group=user,
                    mode="640",
                )
            )
    else:
        ops.append(_copy_from_cloud(cloud, sources, user))
    return ops


def site_environment(plan: Collaboration | None, paths: SitePaths, current: Any) -> dict[str, str]:
    """The gateway's EDGEFAAS_SITE_* settings (gateway.env.j2); none for a site alone."""
    if plan is None:
        return {}
    env = {"EDGEFAAS_SITE_NAME": plan.name, "EDGEFAAS_SITE_ROLE": plan.role}
    if plan.role == "cloud":
        env["EDGEFAAS_SITES_FILE"] = paths.sites_file
        return env
    cloud = cloud_gateway(plan)
    env.update(
        {
            "EDGEFAAS_CLOUD_URL": gateway_url(cloud, hosts.address(cloud)),
            "EDGEFAAS_CLOUD_SITE": plan.cloud.name,
            "EDGEFAAS_SITE_CREDENTIAL_FILE": paths.credential,
            "EDGEFAAS_CATALOGUE_KEY": paths.catalogue_key,
            "EDGEFAAS_CLOUD_CA_FILE": paths.cloud_ca,
            "EDGEFAAS_OBJECTIVES_FILE": paths.objectives,
            "EDGEFAAS_SITE_POLL": str(setting(current, "edgefaas_site_poll")),
        }
    )
    return env


@dataclass(frozen=True)
class CloudWan:
    """The cloud's part in the WAN: the edge switches' plan under its own AS, and its BGP peers."""

    plan: WanPlan
    peers: tuple[Any, ...]
    prepend: int


def cloud_wan(plan: Collaboration | None, wan_plans: dict[str, WanPlan]) -> CloudWan | None:
    """What the cloud gateway `host` announces into the WAN; None where it peers with no provider
    edge (host data `sdwan_peers`) or the edge switches announce nothing."""
    if plan is None or plan.role != "cloud" or not wan_plans or not host.data.get("sdwan_peers"):
        return None
    asn = host.data.get("bgp_asn")
    prepend = setting(host, "edgefaas_wan_cloud_prepend")
    if not isinstance(asn, int) or not isinstance(prepend, int) or not 0 <= prepend <= 10:
        raise DeployError(
            f"{host.name}: a cloud peering with the WAN needs bgp_asn (its AS number, not {asn!r}) and "
            f"edgefaas_wan_cloud_prepend (0 to 10, not {prepend!r})"
        )
    try:
        peers = sdwan_peers(host.name, host.data, asn)
    except RoutingError as exc:
        raise DeployError(str(exc)) from None
    edge_plan = next(iter(wan_plans.values()))
    return CloudWan(dataclasses.replace(edge_plan, host=host.name, asn=asn), peers, prepend)


def cloud_bgp(wan: CloudWan, router_id: str) -> None:
    """FRR's BGP towards the provider edges on the cloud host."""
    apt.packages(name="Install FRR (the cloud's BGP towards the WAN)", packages=["frr"], update=False)
    daemons = files.line(name="Run FRR's bgpd", path=FRR_DAEMONS, line=r"^bgpd=.*", replace="bgpd=yes")
    conf = files.template(
        name=f"Write FRR's BGP towards the WAN (AS {wan.plan.asn}, {len(wan.peers)} provider edge(s))",
        src=str(TEMPLATES / "cloud-frr.conf.j2"),
        dest=FRR_CONF,
        user="frr",
        group="frr",
        mode="640",
        hostname=host.name,
        asn=wan.plan.asn,
        router_id=router_id,
        peers=[{"address": p.address, "asn": p.asn, "name": p.name} for p in wan.peers],
        keepalive=host.data.get("bgp_keepalive") or 3,
        holdtime=host.data.get("bgp_holdtime") or 9,
    )
    keep_running("frr.service", "FRR", any_changed(daemons, conf), "a new configuration")
