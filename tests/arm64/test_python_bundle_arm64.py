"""The arm64 Python bundle, installed the way deploys/platform.py installs it on a board.

The bundle is unpacked into an arm64 tree, the venv launcher and pyvenv.cfg are rendered from
the platform deploy's own templates, the venv is filled from the arm64 wheelhouse by the bundle's
pip, and `edgefaas` answers: all of it arm64 code under qemu-user.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import jinja2

from edgefaas.deploy import python_bundle
from tests.arm64 import support

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "platform"
VENV = "/opt/edgefaas/venv"


def _render(name: str, dest: Path, mode: int) -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Links in the tree are absolute and resolve on this machine, not in the tree: never write
    # through one (the image's own venv/bin/python leads to this machine's /usr/bin/python3).
    assert not dest.is_symlink(), f"{dest} is a link"
    dest.write_text(env.get_template(name).render(**python_bundle.launcher_context("arm64", VENV)))
    dest.chmod(mode)


def test_the_bundle_runs_edgefaas_through_its_own_arm64_loader(arm64_artifact, arm64_root):
    bundle = arm64_root / python_bundle.BUNDLE_DIR.lstrip("/")
    bundle.mkdir(parents=True)
    with tarfile.open(arm64_artifact("python-bundle", "python-bundle")) as tar:
        tar.extractall(bundle, filter="fully_trusted", numeric_owner=True)
    assert (arm64_root / python_bundle.loader("arm64").lstrip("/")).is_file()

    venv = arm64_root / VENV.lstrip("/")
    # The image's own venv stands where the bundle's goes, as an old one would on a device:
    # replaced whole, as deploys/platform.py replaces it.
    shutil.rmtree(venv, ignore_errors=True)
    _render("python-launcher.sh.j2", venv / "bin/python", 0o755)
    _render("pyvenv.cfg.j2", venv / "pyvenv.cfg", 0o644)
    wheels = arm64_root / "tmp/bundle-wheels"
    wheels.mkdir()
    with tarfile.open(arm64_artifact("edgefaas-wheelhouse", "wheelhouse")) as tar:
        tar.extractall(wheels, filter="data")

    pip = python_bundle.pip_command(VENV)
    flags = "--disable-pip-version-check --no-cache-dir --no-compile -q --no-index"
    installed = support.chroot(
        arm64_root, "sh", "-c", f"{pip} install {flags} --find-links /tmp/bundle-wheels 'edgefaas[nodeauth]'"
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    probe = "import platform, sys; print(platform.machine(), sys.executable, sys.prefix)"
    ran = support.chroot(arm64_root, f"{VENV}/bin/python", "-c", probe)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.split() == ["aarch64", f"{VENV}/bin/python", VENV]
    version = support.chroot(arm64_root, f"{VENV}/bin/edgefaas", "--version")
    assert version.returncode == 0 and version.stdout.startswith("edgefaas "), version.stderr
