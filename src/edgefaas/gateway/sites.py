"""Cloud and edge sites: what a gateway knows of its site, its cloud or its edges, and how sites
authenticate to each other.

A gateway with no site name is a site alone, as before. With one it is either

- the **cloud**: it knows every edge site by name and credential (``--sites-file``), signs the
  catalogue of functions published to them (``catalogue``), answers calls they forward and
  rolls up their usage (``usage``); or
- an **edge**: it knows its cloud's URL, its own credential and the cloud's catalogue public key;
  it follows the catalogue, sends calls on to the cloud (``offload``) and pushes its usage there.

A site proves who it is with ``Authorization: EdgeFaaS-Site <site>:<credential>``; the cloud
compares the credential in constant time with the one its sites file holds for that name.
"""

from __future__ import annotations

import functools
import hmac
import json
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click

SITE_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_SITE_NAME = re.compile(SITE_NAME_PATTERN)
# The annotation a function published in the cloud names its sites in (comma-separated).
SITES_ANNOTATION = "edgefaas.io/sites"
SITE_AUTH_SCHEME = "EdgeFaaS-Site"
# Where an answer ran and why; what the function (or a cloud's function) answered otherwise.
SITE_HEADER = "X-EdgeFaaS-Site"
REASON_HEADER = "X-EdgeFaaS-Offload-Reason"
FUNCTION_HEADER = "X-EdgeFaaS-Function"
REACHED_HEADER = "X-EdgeFaaS-Reached"
DEFAULT_CA_FILE = Path("/etc/edgefaas/ca.pem")
# Seconds a catalogue poll or a usage push may take: small requests, so a WAN cut that drops
# packets silently is known within a round (an offloaded call keeps its function's own timeout).
ROUND_TIMEOUT_S = 5.0

Role = Literal["edge", "cloud"]


@dataclass(frozen=True)
class Objective:
    """When an edge stops taking a function's calls itself: this many running here already, or its
    recent local latency above this many milliseconds (None: no such limit)."""

    max_inflight: int | None = None
    max_latency_ms: float | None = None


@dataclass(frozen=True)
class SiteSettings:
    name: str
    role: Role
    # edge: the cloud's gateway (http or https), its site name, this site's credential, the
    # cloud's catalogue key (PEM) and the CA an https cloud URL is verified with.
    cloud_url: str | None = None
    cloud_site: str = "cloud"
    credential: str | None = None
    catalogue_key_pem: bytes | None = None
    ca_file: Path | None = None
    objectives: Mapping[str, Objective] = field(default_factory=dict)
    # cloud: every edge site it publishes to, by name, with its credential.
    known_sites: Mapping[str, str] = field(default_factory=dict)
    # Seconds between an edge's catalogue polls and usage pushes.
    poll_s: float = 2.0
    # How long an edge waits for the cloud to answer an offloaded call (the upstream timeout
    # applies to the function itself there).
    cloud_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        check_site_name(self.name, "site name")
        if self.role == "edge":
            missing = [
                what
                for what, value in (
                    ("the cloud's URL (--cloud-url)", self.cloud_url),
                    ("this site's credential (--site-credential-file)", self.credential),
                    ("the cloud's catalogue key (--catalogue-key)", self.catalogue_key_pem),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"an edge site needs {', '.join(missing)}")
            assert self.cloud_url is not None
            if not self.cloud_url.startswith(("http://", "https://")):
                raise ValueError(f"the cloud's URL {self.cloud_url!r} is not http:// or https://")
            check_site_name(self.cloud_site, "the cloud's site name")
        for site in self.known_sites:
            check_site_name(site, "a site in the sites file")

    @property
    def is_cloud(self) -> bool:
        return self.role == "cloud"

    @property
    def is_edge(self) -> bool:
        return self.role == "edge"

    def client_verify(self) -> ssl.SSLContext | bool:
        """How an https cloud URL is verified: by the CA file (the blueprint's), never not at all."""
        if self.cloud_url and self.cloud_url.startswith("https://"):
            ca = self.ca_file or DEFAULT_CA_FILE
            return ssl.create_default_context(cafile=str(ca))
        return True

    def auth_header(self) -> str:
        return f"{SITE_AUTH_SCHEME} {self.name}:{self.credential}"

    def authenticate(self, authorization: str | None) -> str:
        """The edge site a request comes from (cloud only); ApiError 401 naming what is wrong."""
        # Here, not at the top: `edgefaas` without the gateway extra (a device, the runtime
        # image) reads these settings, and errors.py needs starlette.
        from .errors import ApiError

        scheme, _, value = (authorization or "").strip().partition(" ")
        if scheme.lower() != SITE_AUTH_SCHEME.lower() or ":" not in value:
            raise ApiError(
                401,
                f"a site's credentials are required: Authorization: {SITE_AUTH_SCHEME} <site>:<credential>",
                {"WWW-Authenticate": SITE_AUTH_SCHEME},
            )
        site, _, given = value.strip().partition(":")
        expected = self.known_sites.get(site)
        # Compared even for an unknown site, so the answer's timing does not tell which names exist.
        matches = hmac.compare_digest(given.encode(), (expected or "\0").encode())
        if expected is None or not matches:
            raise ApiError(403, f"site {site!r} is unknown or its credential is wrong")
        return site

    def placement(self, annotations: Mapping[str, str]) -> list[str]:
        """The sites a function's annotation names, checked; ApiError 400 naming an unknown one."""
        # Here, not at the top: `edgefaas` without the gateway extra (a device, the runtime
        # image) reads these settings, and errors.py needs starlette.
        from .errors import ApiError

        raw = annotations.get(SITES_ANNOTATION)
        if raw is None:
            return []
        if not self.is_cloud:
            raise ApiError(
                400,
                f"annotations.{SITES_ANNOTATION}: only a cloud gateway publishes functions to sites; "
                f"this gateway is the {self.role} site {self.name!r}",
            )
        named = [part.strip() for part in raw.split(",") if part.strip()]
        unknown = [site for site in named if site not in self.known_sites]
        if unknown:
            known = ", ".join(sorted(self.known_sites)) or "none"
            raise ApiError(
                400,
                f"annotations.{SITES_ANNOTATION} names unknown site(s) {', '.join(map(repr, unknown))} "
                f"(known: {known})",
            )
        return sorted(set(named))


def check_site_name(name: str, what: str) -> str:
    if not _SITE_NAME.match(name or ""):
        raise ValueError(f"{what} {name!r} must be a DNS label: lowercase letters, digits and '-'")
    return name


def load_known_sites(path: Path) -> dict[str, str]:
    """The cloud's sites file: {"sites": {"edge-a": "<credential>", ...}}."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the sites file {path}: {exc}") from None
    sites = data.get("sites") if isinstance(data, dict) else None
    if not isinstance(sites, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) >= 16 for k, v in sites.items()
    ):
        raise ValueError(
            f'{path}: expected {{"sites": {{"<site>": "<credential of 16 characters or more>"}}}}'
        )
    return dict(sites)


def load_objectives(path: Path) -> dict[str, Objective]:
    """Per-function objectives: {"<function>": {"max_inflight": 4, "max_latency_ms": 250}}."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the objectives file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object of function names")
    objectives = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or set(entry) - {"max_inflight", "max_latency_ms"}:
            raise ValueError(f"{path}: {name}: expected max_inflight and/or max_latency_ms")
        inflight, latency = entry.get("max_inflight"), entry.get("max_latency_ms")
        if inflight is not None and (
            not isinstance(inflight, int) or isinstance(inflight, bool) or inflight < 0
        ):
            raise ValueError(f"{path}: {name}.max_inflight must be an integer >= 0")
        if latency is not None and (not isinstance(latency, int | float) or latency <= 0):
            raise ValueError(f"{path}: {name}.max_latency_ms must be a number > 0")
        objectives[name] = Objective(inflight, None if latency is None else float(latency))
    return objectives


def site_settings(
    site_name: str | None,
    site_role: str | None,
    cloud_url: str | None,
    cloud_site: str,
    credential_file: Path | None,
    catalogue_key: Path | None,
    ca_file: Path | None,
    sites_file: Path | None,
    objectives_file: Path | None,
    poll_s: float,
) -> SiteSettings | None:
    """Settings from the CLI's values (files read here); None for a gateway that is no site."""
    if site_name is None and site_role is None:
        return None
    if site_name is None or site_role is None:
        raise ValueError("--site-name and --site-role go together")
    credential = key_pem = None
    if credential_file is not None:
        credential = credential_file.read_text().strip()
    if catalogue_key is not None:
        key_pem = catalogue_key.read_bytes()
    return SiteSettings(
        name=site_name,
        role="cloud" if site_role == "cloud" else "edge",
        cloud_url=cloud_url.rstrip("/") if cloud_url else None,
        cloud_site=cloud_site,
        credential=credential,
        catalogue_key_pem=key_pem,
        ca_file=ca_file,
        objectives=load_objectives(objectives_file) if objectives_file else {},
        known_sites=load_known_sites(sites_file) if sites_file else {},
        poll_s=poll_s,
    )


_FILE = click.Path(dir_okay=False, path_type=Path)
_OPTIONS = (
    click.option("--site-name", envvar="EDGEFAAS_SITE_NAME", help="This gateway's site (a DNS label)."),
    click.option(
        "--site-role",
        type=click.Choice(["edge", "cloud"]),
        envvar="EDGEFAAS_SITE_ROLE",
        help="cloud: publishes functions to edge sites and serves their offloaded calls; edge: follows "
        "its cloud's catalogue and offloads to it.",
    ),
    click.option(
        "--cloud-url", envvar="EDGEFAAS_CLOUD_URL", help="edge: the cloud gateway (http:// or https://)."
    ),
    click.option(
        "--cloud-site",
        default="cloud",
        show_default=True,
        envvar="EDGEFAAS_CLOUD_SITE",
        help="edge: the cloud's site name; its answers must carry it.",
    ),
    click.option(
        "--site-credential-file",
        type=_FILE,
        envvar="EDGEFAAS_SITE_CREDENTIAL_FILE",
        help="edge: the file holding this site's credential at the cloud.",
    ),
    click.option(
        "--catalogue-key",
        type=_FILE,
        envvar="EDGEFAAS_CATALOGUE_KEY",
        help="edge: the cloud's catalogue public key (PEM); every catalogue entry must verify with it.",
    ),
    click.option(
        "--cloud-ca-file",
        type=_FILE,
        envvar="EDGEFAAS_CLOUD_CA_FILE",
        help=f"edge: the CA an https cloud URL is verified with (default {DEFAULT_CA_FILE}).",
    ),
    click.option(
        "--sites-file",
        type=_FILE,
        envvar="EDGEFAAS_SITES_FILE",
        help='cloud: the edge sites and their credentials, {"sites": {"edge-a": "<credential>"}}.',
    ),
    click.option(
        "--objectives-file",
        type=_FILE,
        envvar="EDGEFAAS_OBJECTIVES_FILE",
        help='edge: per-function objectives past which calls go to the cloud, {"Fn": {"max_inflight": 4, '
        '"max_latency_ms": 250}}.',
    ),
    click.option(
        "--site-poll",
        default=2.0,
        show_default=True,
        type=click.FloatRange(0.05),
        envvar="EDGEFAAS_SITE_POLL",
        help="edge: seconds between catalogue polls and usage pushes.",
    ),
)


def site_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The CLI's site options, handed to ``command`` as one ``sites`` argument (SiteSettings or None)."""

    @functools.wraps(command)
    def with_sites(
        *args: Any,
        site_name: str | None,
        site_role: str | None,
        cloud_url: str | None,
        cloud_site: str,
        site_credential_file: Path | None,
        catalogue_key: Path | None,
        cloud_ca_file: Path | None,
        sites_file: Path | None,
        objectives_file: Path | None,
        site_poll: float,
        **kwargs: Any,
    ) -> Any:
        try:
            sites = site_settings(
                site_name, site_role, cloud_url, cloud_site, site_credential_file, catalogue_key,
                cloud_ca_file, sites_file, objectives_file, site_poll,
            )  # fmt: skip
        except (OSError, ValueError) as exc:
            raise click.UsageError(f"site settings: {exc}") from None
        return command(*args, sites=sites, **kwargs)

    for option in reversed(_OPTIONS):
        with_sites = option(with_sites)
    return with_sites
