"""scripts/setup on a machine that has nothing but Debian's minimal set.

A warm machine hides a missing install step: the package someone once installed by hand
is still there, so every build and CI stay green until a newcomer's `make lab` dies. This
test takes that machine away. It runs `scripts/setup` in a Debian bookworm minbase tree
(debootstrap's smallest system: no python3, no compiler, no foreign architectures, no apt
lists) and then the prerequisite check, and fails with the check's missing list.

Only what the prerequisite table says comes with the machine is lent from this one, read
only: Go in /usr/local/go and Rust in ~/.cargo and ~/.rustup. So is what a site puts on
each of its machines, as a fresh machine there would have it too: the local certificate
authorities in /usr/local/share/ca-certificates (a proxy that inspects TLS signs with one)
and the pip and Go configuration (/etc/pip.conf, ~/.config/go/env: which index and module
proxy to use).

The checkout goes in as a `git archive` of its tracked files (with uncommitted changes to
them, not untracked files). The tree runs under systemd-nspawn without boot, sharing this
machine's network so that apt reaches the Debian mirror apt here uses
(rootfs.debian_mirror()) and pip its index.

Slow and networked (about 1-2 GB of packages), so it runs only when asked for:

    pytest -m coldstart tests/coldstart -s        # or: scripts/task coldstart

The minbase tree is cached under the lab cache, keyed like the lab rootfs (suite, mirror,
layout); downloaded .debs (and pip's downloads, where the index lets them be cached) are
kept beside it, so a rerun still installs everything into a fresh tree but downloads less.
EDGEFAAS_COLDSTART_KEEP=1 keeps the tree after the run, to look into. The transcript (with
seconds since the start on each line) and the tree's dpkg and apt logs land in reports/coldstart/.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from edgefaas.lab import rootfs
from edgefaas.lab.paths import cache_dir

pytestmark = pytest.mark.coldstart

REPO = Path(__file__).resolve().parents[2]
REPORTS = REPO / "reports" / "coldstart"
# Bumped whenever the way the tree is made changes, so the cached tree is rebuilt.
LAYOUT_VERSION = "1"
HOME = Path("/root")
# What the prerequisite table lists as kind "tool": lent from this machine, read only.
GO_ROOT = Path("/usr/local/go")
TOOLCHAINS = (GO_ROOT, HOME / ".cargo", HOME / ".rustup")
# A site's own configuration, copied in (see the module's docstring).
SITE_FILES = (Path("/usr/local/share/ca-certificates"), Path("/etc/pip.conf"), HOME / ".config/go/env")
INSIDE = "/srv/edgefaas"
TIMEOUT_S = int(os.environ.get("EDGEFAAS_COLDSTART_TIMEOUT", "5400"))

SCRIPT = f"""\
set -euo pipefail
cd {INSIDE}
echo "coldstart: scripts/setup"
scripts/setup
echo "coldstart: prerequisites --check --arch all"
PYTHONPATH=src python3 -m edgefaas.lab.builds.prerequisites --check --arch all
echo "coldstart: edgefaas lab build --check --arch all"
.venv/bin/edgefaas lab build --check --arch all
echo "coldstart: done"
"""


def cache_key() -> str:
    text = "\n".join([rootfs.SUITE, rootfs.debian_mirror(), "minbase", LAYOUT_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def work_dir() -> Path:
    return cache_dir() / "coldstart"


def minbase_tarball(log=print) -> Path:
    """The cached minbase tree (.tar.zst), made with debootstrap when missing."""
    target = work_dir() / f"{rootfs.SUITE}-minbase-{cache_key()}.tar.zst"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".minbase-") as tmp:
        root = Path(tmp) / "root"
        log(f"coldstart: debootstrap --variant=minbase {rootfs.SUITE}")
        argv = ["debootstrap", "--variant=minbase", rootfs.SUITE, str(root), rootfs.debian_mirror()]
        rootfs._run(argv, "debootstrap", log)
        # debootstrap leaves its .debs behind; a fresh machine has none.
        for deb in (root / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        partial = Path(tmp) / "minbase.tar.zst"
        pack = ["tar", "--numeric-owner", "--xattrs", "-I", "zstd -T0 -3", "-C", str(root), "-cf"]
        rootfs._run([*pack, str(partial), "."], "pack", log)
        partial.replace(target)
    return target


def unpack(tarball: Path, root: Path) -> None:
    root.mkdir(parents=True)
    unpack = ["tar", "--numeric-owner", "--xattrs", "-I", "zstd", "-C", str(root), "-xf", str(tarball)]
    rootfs._run(unpack, "unpack", print)


def copy_site_files(root: Path) -> None:
    for path in SITE_FILES:
        dest = root / str(path).lstrip("/")
        if path.is_dir():
            shutil.copytree(path, dest, dirs_exist_ok=True)
        elif path.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


def copy_checkout(root: Path) -> str:
    """Put the checkout's tracked files (uncommitted edits included) at INSIDE; return the tree id."""
    ref = subprocess.run(["git", "stash", "create"], cwd=REPO, capture_output=True, text=True, check=True)
    commit = ref.stdout.strip() or "HEAD"
    dest = root / INSIDE.lstrip("/")
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", "--format=tar", commit], cwd=REPO, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    assert archive.wait() == 0, "git archive failed"
    tree = subprocess.run(
        ["git", "rev-parse", f"{commit}^{{tree}}"], cwd=REPO, capture_output=True, text=True
    )
    return tree.stdout.strip()


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4] for line in info]
    return [p for p in points if p.startswith(prefix) or p == prefix[:-1]]


def lent_toolchains() -> list[Path]:
    return list(TOOLCHAINS)


def nspawn_argv(root: Path, apt_cache: Path, pip_cache: Path) -> list[str]:
    binds = [f"--bind-ro={path}" for path in lent_toolchains()]
    return [
        "systemd-nspawn",
        "--quiet",
        "--register=no",
        "--keep-unit",
        "--as-pid2",
        "--console=pipe",
        "--resolv-conf=copy-host",
        "--timezone=off",
        f"--directory={root}",
        "--machine=edgefaas-coldstart",
        *binds,
        f"--bind={apt_cache}:/var/cache/apt/archives",
        f"--bind={pip_cache}:/root/.cache/pip",
        "--setenv=HOME=/root",
        "--setenv=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--setenv=LANG=C.UTF-8",
        "--setenv=DEBIAN_FRONTEND=noninteractive",
        "/bin/bash",
        "-c",
        SCRIPT,
    ]


def run_transcribed(argv: list[str], transcript: Path) -> tuple[int, list[str]]:
    """Run `argv`, writing each output line with the seconds since the start; return (code, lines)."""
    started = time.monotonic()
    lines: list[str] = []
    with transcript.open("w") as out:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                line = f"[{time.monotonic() - started:7.1f}s] {raw.rstrip()}"
                lines.append(line)
                print(line, flush=True)
                out.write(line + "\n")
                out.flush()
                if time.monotonic() - started > TIMEOUT_S:
                    proc.kill()
                    lines.append(f"coldstart: killed after {TIMEOUT_S}s")
                    break
        finally:
            code = proc.wait()
    return code, lines


def test_setup_on_a_fresh_debian_installs_every_prerequisite(request):
    if "coldstart" not in (request.config.getoption("-m") or ""):
        pytest.skip("slow and networked (~1-2 GB of packages): run it with `pytest -m coldstart`")
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap, systemd-nspawn)")
    for tool in ("debootstrap", "systemd-nspawn", "zstd", "git"):
        assert shutil.which(tool), f"{tool} is needed to make and run the fresh tree"
    lacking = [path for path in lent_toolchains() if not path.is_dir()]
    assert not lacking, (
        f"this machine lacks {', '.join(map(str, lacking))}: the prerequisite table says Go and Rust come "
        "with the machine, so the fresh tree borrows them from here"
    )

    timings: dict[str, float] = {}
    t = time.monotonic()
    tarball = minbase_tarball()
    timings["minbase tree (cached after the first run)"] = time.monotonic() - t

    apt_cache = work_dir() / "apt-archives"
    pip_cache = work_dir() / "pip-cache"
    (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
    pip_cache.mkdir(parents=True, exist_ok=True)
    REPORTS.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(dir=work_dir(), prefix=".run-"))
    root = run_dir / "root"
    try:
        t = time.monotonic()
        unpack(tarball, root)
        copy_site_files(root)
        tree = copy_checkout(root)
        timings["unpack the tree and the checkout"] = time.monotonic() - t
        print(f"coldstart: checkout tree {tree} in a fresh {rootfs.SUITE} minbase at {root}", flush=True)

        t = time.monotonic()
        code, lines = run_transcribed(nspawn_argv(root, apt_cache, pip_cache), REPORTS / "transcript.log")
        timings["scripts/setup and the checks, inside"] = time.monotonic() - t
        for log in ("var/log/dpkg.log", "var/log/apt/history.log", "var/log/apt/term.log"):
            if (root / log).exists():
                shutil.copyfile(root / log, REPORTS / Path(log).name)
    finally:
        leftover = mounts_under(run_dir)
        if leftover:
            # Deleting through a mount could delete what it shows (the lent toolchains).
            pytest.fail(f"mounts left under {run_dir}, not removing it: {leftover}")
        if os.environ.get("EDGEFAAS_COLDSTART_KEEP"):
            print(f"coldstart: kept {run_dir}", flush=True)
        else:
            t = time.monotonic()
            shutil.rmtree(run_dir)
            timings["remove the tree"] = time.monotonic() - t

    for step, seconds in timings.items():
        print(f"coldstart: {seconds:7.1f}s  {step}", flush=True)
    missing = [line for line in lines if "missing:" in line]
    assert code == 0, (
        f"on a fresh {rootfs.SUITE} minbase, scripts/setup and the check failed (exit {code}).\n"
        + ("\n".join(missing) if missing else "\n".join(lines[-30:]))
        + f"\nFull transcript: {REPORTS / 'transcript.log'}"
    )
    assert not missing, "\n".join(missing)
