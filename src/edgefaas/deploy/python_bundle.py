"""Where a device keeps EdgeFaaS's own Python, and how its services start it.

The bundle (edgefaas.lab.builds.python_bundle) is a Debian tree with Python and the C library
it was built with. A device's own dynamic loader would pair the bundle's Python with the
device's glibc (2.27 on JetPack 4, 2.31 on JetPack 5: too old for it), so the launcher starts
the interpreter through the bundle's loader instead, with the bundle's libraries first on its
search path. That path is an argument of the loader, not LD_LIBRARY_PATH: programs the
services run (k3s, parsec-tool, systemctl) keep the device's own libraries.

The venv beside it is an ordinary venv whose `bin/python` is that launcher: console scripts,
pip and `sys.executable` all go through it, so `edgefaas ...` works on any device userland.
"""

from __future__ import annotations

from edgefaas.lab.artifacts import GNU_ARCH
from edgefaas.lab.builds.python_bundle import INTERPRETER, PYTHON_VERSION

BUNDLE_DIR = "/opt/edgefaas/python"
# The bundle's libpython alone, for programs that embed Python (Triton's Python-backend stub)
# on a device whose own C library is new enough: the rest of the bundle's libraries, its libc
# above all, must not be put before the device's own on a library path.
EMBED_LIB_DIR = "/opt/edgefaas/lib"
_LOADERS = {"amd64": "ld-linux-x86-64.so.2", "arm64": "ld-linux-aarch64.so.1"}


def loader(arch: str) -> str:
    """The bundle's own dynamic loader for `arch` (a real file: the /lib64 links are absolute)."""
    return f"{BUNDLE_DIR}/usr/lib/{GNU_ARCH[arch]}-linux-gnu/{_LOADERS[arch]}"


def library_path(arch: str) -> str:
    return f"{BUNDLE_DIR}/usr/lib/{GNU_ARCH[arch]}-linux-gnu"


def libpython(arch: str) -> str:
    return f"{library_path(arch)}/libpython{PYTHON_VERSION}.so.1.0"


def interpreter() -> str:
    return f"{BUNDLE_DIR}/{INTERPRETER}"


def launcher_context(arch: str, venv: str) -> dict[str, str]:
    """What templates/platform/python-launcher.sh.j2 and pyvenv.cfg.j2 are rendered with."""
    return {
        "loader": loader(arch),
        "library_path": library_path(arch),
        "interpreter": interpreter(),
        "home": f"{BUNDLE_DIR}/usr/bin",
        "version": PYTHON_VERSION,
        "venv": venv,
    }


def pip_command(venv: str) -> str:
    """pip from the wheel the bundle carries (Debian's python3-pip-whl), run by the venv."""
    # Python runs pip straight from its wheel (a zip); the shell finds the wheel's name.
    return f"{venv}/bin/python $(echo {BUNDLE_DIR}/usr/share/python-wheels/pip-*.whl)/pip"
