"""Where the lab keeps things on the lab machine.

Two roots, both overridable for people who keep caches on another disk:
- the cache (EDGEFAAS_CACHE, default /var/cache/edgefaas): expensive, reusable results keyed on
  versions: the rootfs tarball, built upstream artifacts, the wheelhouse. Safe to delete.
- the state (EDGEFAAS_STATE, default /var/lib/edgefaas): one directory per running lab, holding
  its state file, SSH key, known_hosts and each device's writable layer.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEFAAS_CACHE", "/var/cache/edgefaas"))


def state_root() -> Path:
    return Path(os.environ.get("EDGEFAAS_STATE", "/var/lib/edgefaas"))


def lab_dir(lab: str) -> Path:
    return state_root() / "labs" / lab


def artifact_dir() -> Path:
    return Path(os.environ.get("EDGEFAAS_ARTIFACTS", str(cache_dir() / "artifacts")))
