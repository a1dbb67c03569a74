"""Which scan findings concern the blueprint, and the declared reason for each one we accept.

A Lynis warning is the blueprint's when it names one of the blueprint's own services, files
or tools (BLUEPRINT_NAMES); every kube-hunter finding of high or medium severity is, since
the cluster is the blueprint's. Such a finding fails `scripts/task scan` unless ACCEPTED
below gives the reason it stays; a finding we can fix is fixed in the deploys instead.
Findings about the device's own base system (the switch's or board's OS image) are listed
in the summary, not failed: the blueprint does not install that system.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The blueprint's services, their files and tools, as they appear in scanners' findings.
BLUEPRINT_NAMES = (
    "edgefaas",
    "k3s",
    "rancher",
    "containerd",
    "kubelet",
    "kube-proxy",
    "flannel",
    "parsec",
    "triton",
    "tritonserver",
    "nodeauth",
    "nats",
    "postgres",
    "postgresql",
    "runc",
)
# A whole name: "edgefaas-gateway" and "/etc/rancher/k3s" count, "truncated" holds no "runc".
_BLUEPRINT = re.compile(
    r"(?<![a-z0-9])(" + "|".join(map(re.escape, BLUEPRINT_NAMES)) + r")(?![a-z0-9])", re.IGNORECASE
)


@dataclass(frozen=True)
class Accepted:
    scanner: str  # "lynis" or "kube-hunter"
    finding: str  # Lynis test id (e.g. PKGS-7388) or kube-hunter vid (e.g. KHV002)
    where: str  # a part of the finding's details or location it applies to ("": anywhere)
    reason: str


ACCEPTED: tuple[Accepted, ...] = ()


def blueprint_names_in(text: str) -> list[str]:
    """The blueprint's names that `text` mentions (a finding's message, details, location)."""
    return sorted({m.group(1).lower() for m in _BLUEPRINT.finditer(text)})


def justification(
    scanner: str, finding: str, text: str, table: tuple[Accepted, ...] = ACCEPTED
) -> Accepted | None:
    """The entry of `table` that accepts this finding, if any."""
    for entry in table:
        if entry.scanner == scanner and entry.finding == finding and entry.where in text:
            return entry
    return None
