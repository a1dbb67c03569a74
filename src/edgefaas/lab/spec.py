"""What a lab is made of: devices, profiles, roles, and their addresses.

A lab spec is a small YAML file (or the embedded default) that is validated
completely before anything on the machine is created, so a typo never leaves a
half-built lab behind.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# `wan` is the lab's stand-in for the SD-WAN provider edge (edgefaas.lab.wan): not a
# blueprint device, so it belongs to no inventory group the deploys run on. `cloud` is a plain
# x86 server of the cloud site (Scenario 3.3), on a segment of its own behind the `wan` device.
PROFILES = ("sonic", "jetson", "wan", "cloud")
# The Debian releases a device's root filesystem can be: bookworm is SONiC 202311 and later;
# bullseye is SONiC 202305 and, with glibc 2.31, the closest to JetPack 5's Ubuntu 20.04.
USERLANDS = ("bookworm", "bullseye")
# What each profile gets unless its spec says otherwise: switches the current SONiC base, boards
# the JetPack 5 generation's glibc and Python (no registry here serves Ubuntu 20.04).
PROFILE_USERLANDS = {"sonic": "bookworm", "jetson": "bullseye", "wan": "bookworm", "cloud": "bookworm"}
# Debian's names; a device of another architecture than the lab machine's runs under qemu-user.
ARCHES = ("amd64", "arm64")
ROLES = ("k3s_server", "k3s_agent")
# Host addresses below this offset stay free for the machine's own bridge address
# and anything an operator wants to add by hand (an apt proxy, a PC browser...).
FIRST_DEVICE_OFFSET = 11
# The SD-WAN provider edge of the lab (edgefaas.lab.wan): its AS number (private, below the
# switches' 65100 + n of profiles.LAB_ASN_BASE) and the subnet of the WAN client behind it.
WAN_ASN = 65000
WAN_CLIENT_SUBNET = "10.200.0.0/24"
# The default lab's one provider edge, after the switches and boards.
DEFAULT_WAN_DEVICE = {"name": "wan-1", "profile": "wan"}
# The default lab's cloud site: one server, its own K3S cluster, behind the provider edge.
DEFAULT_CLOUD_DEVICE = {"name": "cloud-1", "profile": "cloud", "roles": ["k3s_server"]}
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_SPEC_FIELDS = {"name", "subnet", "devices"}
_DEVICE_FIELDS = {"name", "profile", "roles", "address", "userland", "arch"}


class SpecError(ValueError):
    """A lab spec that cannot be built; the message names the offending field."""


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    profile: str
    roles: tuple[str, ...]
    address: str
    userland: str = "bookworm"
    arch: str = "amd64"

    @property
    def groups(self) -> tuple[str, ...]:
        """Inventory groups this device belongs to (profile first, then roles); none for the
        WAN stand-in, which no deploy configures (the switches name it in sdwan_peers). A `cloud`
        device is in group `cloud`, which puts it in the cloud site (edgefaas.deploy.sites)."""
        if self.profile == "wan":
            return ()
        return (self.profile, *self.roles)


@dataclass(frozen=True)
class LabSpec:
    name: str = "edgefaas"
    subnet: str = "10.77.0.0/24"
    devices: tuple[DeviceSpec, ...] = field(default_factory=tuple)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def gateway(self) -> str:
        """The lab machine's own address on the bridge."""
        return str(self.network.network_address + 1)

    @property
    def cloud_network(self) -> ipaddress.IPv4Network:
        """The cloud segment: the network of the lab subnet's size right after it. Only the `wan`
        device is on it too, so the cloud is reached through the provider edge's routing alone."""
        net = self.network
        return ipaddress.IPv4Network((int(net.network_address) + net.num_addresses, net.prefixlen))

    @property
    def cloud_gateway(self) -> str:
        """The provider edge's address on the cloud segment: the cloud devices' default route."""
        return str(self.cloud_network.network_address + 1)

    def subnet_of(self, dev: DeviceSpec) -> ipaddress.IPv4Network:
        return self.cloud_network if dev.profile == "cloud" else self.network

    def router_of(self, dev: DeviceSpec) -> str:
        """The device's default route: the lab machine (which forwards nothing), or for a cloud
        device the provider edge."""
        return self.cloud_gateway if dev.profile == "cloud" else self.gateway

    @property
    def wan_device(self) -> DeviceSpec | None:
        """The provider edge the cloud segment hangs off (the first `wan` device)."""
        return next((d for d in self.devices if d.profile == "wan"), None)

    @property
    def bridge(self) -> str:
        # Linux limits interface names to 15 characters.
        return f"br-{self.name}"[:15]

    def device(self, name: str) -> DeviceSpec:
        for dev in self.devices:
            if dev.name == name:
                return dev
        known = ", ".join(d.name for d in self.devices)
        raise SpecError(f"no device named {name!r} in lab {self.name!r} (devices: {known})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "subnet": self.subnet,
            "devices": [
                {
                    "name": d.name,
                    "profile": d.profile,
                    "roles": list(d.roles),
                    "address": d.address,
                    "userland": d.userland,
                    "arch": d.arch,
                }
                for d in self.devices
            ],
        }


def default_devices(count: int = 3) -> list[dict[str, Any]]:
    """The embedded default: two thirds SONiC switches, one third Jetson boards.

    The first SONiC device is the K3S server, every other device an agent, so
    `count=3` is the blueprint's own demo (sonic-1, sonic-2, jetson-1) and larger
    counts keep that shape for scaling measurements.
    """
    if count < 1:
        raise SpecError(f"devices: a lab needs at least one device, got {count}")
    jetsons = count // 3
    sonics = count - jetsons
    devices: list[dict[str, Any]] = []
    for i in range(1, sonics + 1):
        role = "k3s_server" if i == 1 else "k3s_agent"
        devices.append({"name": f"sonic-{i}", "profile": "sonic", "roles": [role]})
    for i in range(1, jetsons + 1):
        devices.append({"name": f"jetson-{i}", "profile": "jetson", "roles": ["k3s_agent"]})
    return devices


def default_lab_devices(count: int = 3) -> list[dict[str, Any]]:
    """The default lab: `count` switches and boards (default_devices), the WAN stand-in, and the
    cloud site's server behind it."""
    return [*default_devices(count), dict(DEFAULT_WAN_DEVICE), dict(DEFAULT_CLOUD_DEVICE)]


def parse_spec(data: Any, source: str = "spec") -> LabSpec:
    """Validate a spec mapping and allocate addresses; raise SpecError naming the field."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping with keys {sorted(_SPEC_FIELDS)}")
    unknown = set(data) - _SPEC_FIELDS
    if unknown:
        raise SpecError(f"{source}: unknown field {sorted(unknown)[0]!r} (known: {sorted(_SPEC_FIELDS)})")

    name = data.get("name", "edgefaas")
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 12:
        raise SpecError(
            f"{source}: name {name!r} must be 1-12 characters of a-z, 0-9 and '-', "
            "starting with a letter (it names the bridge and the cgroups)"
        )

    subnet_text = data.get("subnet", "10.77.0.0/24")
    try:
        network = ipaddress.IPv4Network(str(subnet_text))
    except ValueError as exc:
        raise SpecError(f"{source}: subnet {subnet_text!r} is not an IPv4 network: {exc}") from None
    if not network.is_private:
        raise SpecError(f"{source}: subnet {network} must be a private range (the lab never routes out)")

    raw_devices = data.get("devices")
    if raw_devices is None:
        raw_devices = default_lab_devices()
    if not isinstance(raw_devices, list) or not raw_devices:
        raise SpecError(f"{source}: devices must be a non-empty list")
    usable = network.num_addresses - 2 - FIRST_DEVICE_OFFSET + 1
    if len(raw_devices) > usable:
        raise SpecError(
            f"{source}: subnet {network} has room for {max(usable, 0)} devices, "
            f"{len(raw_devices)} were asked for"
        )
    cloud_network = LabSpec(subnet=str(network)).cloud_network

    devices: list[DeviceSpec] = []
    seen_names: set[str] = set()
    seen_addresses: set[str] = {str(network.network_address + 1), str(cloud_network.network_address + 1)}
    for index, raw in enumerate(raw_devices):
        where = f"{source}: devices[{index}]"
        if not isinstance(raw, dict):
            raise SpecError(f"{where}: expected a mapping with keys {sorted(_DEVICE_FIELDS)}")
        unknown = set(raw) - _DEVICE_FIELDS
        if unknown:
            raise SpecError(
                f"{where}: unknown field {sorted(unknown)[0]!r} (known: {sorted(_DEVICE_FIELDS)})"
            )
        dev_name = raw.get("name")
        if not isinstance(dev_name, str) or not _NAME.match(dev_name):
            raise SpecError(f"{where}: name {dev_name!r} must be a lowercase hostname")
        if dev_name in seen_names:
            raise SpecError(f"{where}: name {dev_name!r} is used twice")
        seen_names.add(dev_name)
        profile = raw.get("profile")
        if profile not in PROFILES:
            raise SpecError(f"{where} ({dev_name}): profile {profile!r} must be one of {list(PROFILES)}")
        roles = raw.get("roles", [])
        if not isinstance(roles, list) or any(r not in ROLES for r in roles):
            raise SpecError(f"{where} ({dev_name}): roles {roles!r} must be a list drawn from {list(ROLES)}")
        if profile == "wan" and roles:
            raise SpecError(f"{where} ({dev_name}): roles: a wan device (the provider edge) takes no roles")
        segment = cloud_network if profile == "cloud" else network
        if "k3s_server" in roles and "k3s_agent" in roles:
            raise SpecError(f"{where} ({dev_name}): roles: a device is either k3s_server or k3s_agent")
        if "address" in raw:
            try:
                addr = ipaddress.IPv4Address(str(raw["address"]))
            except ValueError:
                raise SpecError(
                    f"{where} ({dev_name}): address {raw['address']!r} is not an IPv4 address"
                ) from None
            if addr not in segment or addr in (segment.network_address, segment.broadcast_address):
                what = "the cloud segment" if profile == "cloud" else "subnet"
                raise SpecError(
                    f"{where} ({dev_name}): address {addr} is not a host address of {what} {segment}"
                )
        else:
            # Numbered within their segment: the first cloud server is .11 of the cloud segment.
            addr = (
                segment.network_address
                + FIRST_DEVICE_OFFSET
                + sum(1 for d in devices if (d.profile == "cloud") == (profile == "cloud"))
            )
            while str(addr) in seen_addresses:
                addr += 1
        if str(addr) in seen_addresses:
            raise SpecError(f"{where} ({dev_name}): address {addr} is already taken in this lab")
        seen_addresses.add(str(addr))
        userland = raw.get("userland", PROFILE_USERLANDS[profile])
        if userland not in USERLANDS:
            raise SpecError(f"{where} ({dev_name}): userland {userland!r} must be one of {list(USERLANDS)}")
        arch = raw.get("arch", "amd64")
        if arch not in ARCHES:
            raise SpecError(f"{where} ({dev_name}): arch {arch!r} must be one of {list(ARCHES)}")
        devices.append(DeviceSpec(dev_name, profile, tuple(roles), str(addr), userland, arch))

    wan_client = ipaddress.IPv4Network(WAN_CLIENT_SUBNET)
    if any(d.profile == "wan" for d in devices) and network.overlaps(wan_client):
        raise SpecError(
            f"{source}: subnet {network} overlaps {wan_client}, the WAN client subnet behind the "
            "wan device; choose another subnet"
        )
    clouds = [d.name for d in devices if d.profile == "cloud"]
    if clouds and not any(d.profile == "wan" for d in devices):
        raise SpecError(
            f"{source}: devices: cloud devices ({', '.join(clouds)}) are reached through a wan device "
            "(the provider edge), and there is none"
        )
    if clouds and cloud_network.overlaps(wan_client):
        raise SpecError(
            f"{source}: the cloud segment {cloud_network} (the network after subnet {network}) overlaps "
            f"{wan_client}, the WAN client subnet; choose another subnet"
        )
    # The lab's sites: the cloud devices are one (edgefaas.deploy.sites), everything else the other.
    for side in (True, False):
        servers = [d.name for d in devices if "k3s_server" in d.roles and (d.profile == "cloud") == side]
        if len(servers) > 1:
            raise SpecError(
                f"{source}: devices: {len(servers)} k3s_server devices ({', '.join(servers)}) in the "
                f"{'cloud' if side else 'edge'} site; the lab supports one server per site"
            )
    return LabSpec(name=name, subnet=str(network), devices=tuple(devices))


def load_spec(path: Path | None = None, devices: int | None = None) -> LabSpec:
    """Load a spec file, or build the default lab with `devices` devices."""
    if path is not None and devices is not None:
        raise SpecError("give either a spec file or --devices, not both")
    if path is None:
        # EDGEFAAS_LAB / EDGEFAAS_LAB_SUBNET let two labs (say, two CI jobs) share a machine.
        data = {
            "name": os.environ.get("EDGEFAAS_LAB", "edgefaas"),
            "subnet": os.environ.get("EDGEFAAS_LAB_SUBNET", "10.77.0.0/24"),
            "devices": default_lab_devices(devices or 3),
        }
        return parse_spec(data, source="default lab")
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    return parse_spec(data, source=str(path))


def check_subnet_free(spec: LabSpec, routes: list[ipaddress.IPv4Network], own: set[str]) -> None:
    """Refuse a subnet that overlaps a network this machine already reaches.

    `routes` are the machine's current routes and interface networks; `own` holds
    networks that are this lab's own bridge (a re-run of `up` must not clash with itself).
    """
    mine = [(spec.network, f"subnet {spec.subnet}")]
    if any(d.profile == "cloud" for d in spec.devices):
        mine.append(
            (spec.cloud_network, f"the cloud segment {spec.cloud_network} (after subnet {spec.subnet})")
        )
    for net in routes:
        if str(net) in own or net.prefixlen == 0:
            continue
        for wanted, what in mine:
            if wanted.overlaps(net):
                raise SpecError(
                    f"{what} clashes with {net}, which this machine already uses; "
                    "choose another subnet in the spec"
                )
