"""Real photos for the camera replay and the vision tests, taken from a package's sample data.

Nothing at run time may download (the lab has no route out, edge sites are often
air-gapped), and a face detector needs a real face to find: matplotlib's wheel ships
NASA's public-domain portrait of Grace Hopper as sample data. The wheel is fetched once
with pip (no dependencies, never installed) and the photo is cached beside it.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from edgefaas.lab.builds.steps import Log, download_wheels
from edgefaas.lab.paths import cache_dir

MATPLOTLIB_VERSION = "3.9.2"
PHOTOS = ("grace_hopper.jpg",)


def sample_photos(log: Log = print) -> list[Path]:
    """Paths of the cached sample photos, fetching matplotlib's wheel the first time."""
    target = cache_dir() / "samples" / f"matplotlib-{MATPLOTLIB_VERSION}"
    wanted = [target / name for name in PHOTOS]
    if all(path.is_file() for path in wanted):
        return wanted
    target.mkdir(parents=True, exist_ok=True)
    log(f"samples: fetching matplotlib {MATPLOTLIB_VERSION}'s wheel for its sample photos")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        download_wheels(
            Path(tmp),
            [f"matplotlib=={MATPLOTLIB_VERSION}"],
            ["manylinux2014_x86_64", "manylinux_2_17_x86_64"],
            "samples: pip download matplotlib",
        )
        wheel = next(Path(tmp).glob("matplotlib-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            members = {Path(name).name: name for name in archive.namelist() if "/sample_data/" in name}
            for path in wanted:
                if path.name not in members:
                    raise RuntimeError(f"samples: {wheel.name} has no sample_data/{path.name}")
                partial = path.with_suffix(".part")
                partial.write_bytes(archive.read(members[path.name]))
                partial.replace(path)
    return wanted
