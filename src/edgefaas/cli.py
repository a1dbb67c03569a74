"""The `edgefaas` command: the virtual device lab, and the blueprint's operator tools."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from edgefaas.lab.spec import SpecError


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _log(message: str) -> None:
    click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgefaas", message="%(prog)s %(version)s")
def main() -> None:
    """EdgeFaaS on SONiC: deploy K3S, Parsec, EdgeFaaS and Triton onto SONiC switches and
    Jetson boards, or onto the virtual device lab that stands in for them.

    \b
    Typical session on a fresh machine (as root):
      edgefaas lab up                      # boot sonic-1, sonic-2, jetson-1
      pyinfra -y inventories/lab.py deploys/site.py
      pytest -m lab tests/integration      # verify, through the same inventory
      edgefaas lab down

    \b
    Shell completion (bash; zsh_source and fish_source for the others):
      eval "$(_EDGEFAAS_COMPLETE=bash_source edgefaas)"
    """


@main.group()
def lab() -> None:
    """The virtual device lab: systemd-nspawn devices on a bridge that cannot route out."""


@lab.command("up")
@click.option(
    "--devices",
    "-n",
    type=int,
    help="Number of switches and boards (default 3: sonic-1, sonic-2, jetson-1), and the WAN router wan-1.",
)
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A lab spec YAML file (name, subnet, devices) instead of --devices.",
)
@click.option("--ssh-timeout", default=90.0, show_default=True, help="Seconds to wait for each device's SSH.")
def lab_up(devices: int | None, spec_file: Path | None, ssh_timeout: float) -> None:
    """Build (cached) the rootfs and boot the lab. Safe to re-run: it converges.

    \b
    Spec file example:
      name: biglab            # bridge br-biglab, state /var/lib/edgefaas/labs/biglab
      subnet: 10.78.0.0/24
      devices:
        - {name: sonic-1, profile: sonic, roles: [k3s_server]}
        - {name: jetson-1, profile: jetson, roles: [k3s_agent]}
        # optional per device: userland bookworm (default) or bullseye;
        # arch amd64 (default) or arm64 (booted under qemu-user)
        - {name: jetson-2, profile: jetson, userland: bullseye}
    """
    from edgefaas.lab import lifecycle
    from edgefaas.lab.spec import load_spec

    try:
        spec = load_spec(spec_file, devices)
        lifecycle.up(spec, log=_log, ssh_timeout=ssh_timeout)
    except (SpecError, lifecycle.LabError, RuntimeError) as exc:
        _fail(str(exc))
    _print_status(spec.name)


@lab.command("down")
@click.option("--name", default=None, help="Lab name (default: EDGEFAAS_LAB or 'edgefaas').")
def lab_down(name: str | None) -> None:
    """Stop every device and remove what the lab made: processes, mounts, cgroups, bridge, rules."""
    from edgefaas.lab import lifecycle

    try:
        lifecycle.down(_lab_name(name), log=_log)
    except lifecycle.LabError as exc:
        _fail(str(exc))


@lab.command("stop")
@click.argument("device")
@click.option("--name", default=None, help="Lab name (default: EDGEFAAS_LAB or 'edgefaas').")
def lab_stop(device: str, name: str | None) -> None:
    """Power DEVICE off cleanly, as a board losing power after a clean shutdown; its disk is kept."""
    from edgefaas.lab import lifecycle
    from edgefaas.lab.state import StateError

    try:
        lifecycle.stop_device(_lab_name(name), device, log=_log)
    except (lifecycle.LabError, StateError) as exc:
        _fail(str(exc))


@lab.command("start")
@click.argument("device")
@click.option("--name", default=None, help="Lab name (default: EDGEFAAS_LAB or 'edgefaas').")
@click.option("--ssh-timeout", default=90.0, show_default=True, help="Seconds to wait for its SSH.")
def lab_start(device: str, name: str | None, ssh_timeout: float) -> None:
    """Boot a powered-off DEVICE from its disk: same identity, same services, nothing rewritten."""
    from edgefaas.lab import lifecycle
    from edgefaas.lab.state import StateError

    try:
        lifecycle.start_device(_lab_name(name), device, log=_log, ssh_timeout=ssh_timeout)
    except (lifecycle.LabError, StateError, RuntimeError) as exc:
        _fail(str(exc))


@lab.command("status")
@click.option("--name", default=None, help="Lab name (default: EDGEFAAS_LAB or 'edgefaas').")
def lab_status(name: str | None) -> None:
    """Each device: profile, roles, address, state."""
    _print_status(_lab_name(name))


@lab.command("ssh", context_settings={"ignore_unknown_options": True})
@click.argument("device")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--name", default=None, help="Lab name.")
def lab_ssh(device: str, command: tuple[str, ...], name: str | None) -> None:
    """Open a shell on DEVICE (as admin, who has sudo), or run COMMAND there."""
    from edgefaas.lab.lifecycle import ssh_command
    from edgefaas.lab.state import StateError, load_state

    try:
        state = load_state(_lab_name(name))
        argv = ssh_command(state, device, *command)
    except (StateError, SpecError) as exc:
        _fail(str(exc))
    if not command:
        argv.insert(1, "-t")
        argv.remove("BatchMode=yes")
        argv.remove("-o")
    os.execvp(argv[0], argv)


@lab.command("build")
@click.argument("names", nargs=-1)
@click.option(
    "--arch",
    "arches",
    default="native",
    show_default=True,
    help="Devices' architectures: amd64, arm64, a comma list, 'all', or 'native' (this machine's).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Only verify that every prerequisite of these builds is installed (seconds); build nothing.",
)
def lab_build(names: tuple[str, ...], arches: str, check: bool) -> None:
    """Build (or reuse from the cache) upstream artifacts: all of them, or the NAMES given.

    \b
    rootfs         Debian root filesystem for lab devices (debootstrap)
    wheelhouse     the edgefaas package and its dependencies as wheels, for devices
    parsec         parsec-service and parsec-tool (cargo)
    k3s            k3s from its Go module, and flannel's CNI plugin (go, ~15 min cold)
    pause-image    K3S pod sandbox image from Debian's catatonit (docker-archive tarball)
    runtime-image  function runtime image: Debian + edgefaas[vision] in a venv (docker-archive)
    python-bundle  the interpreter devices run EdgeFaaS's host services with (the image's base)
    triton         tritonserver 2.51.0 + Python backend + perf_analyzer, from PyPI wheels

    \b
    Examples:
      edgefaas lab build                      # everything, for this machine's architecture
      edgefaas lab build --arch all k3s       # k3s for amd64 and arm64 devices
      edgefaas lab build --check --arch all   # are the toolchains and packages all there?
    """
    from edgefaas.lab.artifacts import UnsupportedArch
    from edgefaas.lab.builds import BUILDERS, prerequisites

    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        _fail(f"unknown artifact {unknown[0]!r}; choose from {', '.join(BUILDERS)}")
    try:
        targets = prerequisites.parse_arches(arches)
    except UnsupportedArch as exc:
        _fail(str(exc))
    selected = list(names or BUILDERS)
    missing = prerequisites.missing(selected, targets)
    if missing:
        for item in missing:
            click.echo(f"missing: {item.describe()}", err=True)
        _fail(
            f"{len(missing)} prerequisite(s) of {', '.join(selected)} ({', '.join(targets)}) missing: "
            "run scripts/setup as root, or the commands above"
        )
    if check:
        click.echo(f"prerequisites of {', '.join(selected)} for {', '.join(targets)}: all installed")
        return
    from edgefaas.lab import artifacts

    for arch in targets:
        for name in selected:
            try:
                with artifacts.timed_build():
                    BUILDERS[name](_log, arch)
            except RuntimeError as exc:
                _fail(str(exc))


# The lab's cloud site (its `cloud` device) is a cluster of its own, with its own gateway and CA.
CLOUD_OPTION = click.option(
    "--cloud", is_flag=True, help="The cloud site's (the lab's cloud device), not the edge's."
)


@lab.command("kubeconfig")
@click.option("--name", default=None, help="Lab name.")
@CLOUD_OPTION
def lab_kubeconfig(name: str | None, cloud: bool) -> None:
    """Write a kubeconfig for the lab's K3S cluster that works from this machine; print its path."""
    import subprocess

    import yaml

    from edgefaas.lab.lifecycle import ssh_command
    from edgefaas.lab.state import StateError, load_state

    try:
        state = load_state(_lab_name(name))
    except StateError as exc:
        _fail(str(exc))
    from edgefaas.lab.gateway import k3s_server

    try:
        server = state.spec.device(k3s_server(state, cloud))
    except SpecError as exc:
        _fail(str(exc))
    proc = subprocess.run(
        ssh_command(state, server.name, "sudo", "cat", "/etc/rancher/k3s/k3s.yaml"),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        _fail(f"no kubeconfig on {server.name} (is K3S deployed? deploys/k3s.py): {proc.stderr.strip()}")
    config = yaml.safe_load(proc.stdout)
    for cluster in config.get("clusters", []):
        cluster["cluster"]["server"] = f"https://{server.address}:6443"
    path = state.dir / ("kubeconfig-cloud" if cloud else "kubeconfig")
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config))
    click.echo(str(path))


@lab.command("gateway-url")
@click.option("--name", default=None, help="Lab name.")
@click.option("--port", default=8080, show_default=True, type=int)
@CLOUD_OPTION
def lab_gateway_url(name: str | None, port: int, cloud: bool) -> None:
    """The URL of the lab's EdgeFaaS gateway (deploys/edgefaas.py)."""
    from edgefaas.lab.gateway import gateway_url
    from edgefaas.lab.state import StateError, load_state

    try:
        click.echo(gateway_url(load_state(_lab_name(name)), port, cloud))
    except (StateError, SpecError) as exc:
        _fail(str(exc))


@lab.command("ca")
@click.option("--name", default=None, help="Lab name.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write it here, not stdout."
)
@CLOUD_OPTION
def lab_ca(name: str | None, out: Path | None, cloud: bool) -> None:
    """The blueprint's CA certificate (PEM) from the lab's K3S server: what clients trust
    (curl --cacert, SSL_CERT_FILE)."""
    from edgefaas.lab.gateway import fetch_ca
    from edgefaas.lab.lifecycle import LabError
    from edgefaas.lab.state import StateError, load_state

    try:
        pem = fetch_ca(load_state(_lab_name(name)), cloud=cloud)
    except (StateError, SpecError, LabError) as exc:
        _fail(str(exc))
    if out is None:
        click.echo(pem, nl=False)
    else:
        out.write_text(pem)
        click.echo(str(out))


@lab.command("artifacts")
@click.option(
    "--compare",
    is_flag=True,
    help="One row per artifact: each architecture's size and build time side by side.",
)
def lab_artifacts(compare: bool) -> None:
    """Built upstream artifacts, one per line, tab-separated: name, arch, version, size in
    bytes, build seconds ("-" when not timed), path, sha256."""
    from edgefaas.lab import artifacts

    found = sorted(artifacts.present(), key=lambda a: (a.name, a.arch))
    if not found:
        _log("no artifacts built yet (`edgefaas lab build`)")
    if compare:
        _print_comparison(found)
        return
    for item in found:
        took = "-" if item.build_seconds is None else f"{item.build_seconds:.1f}"
        click.echo(
            f"{item.name}\t{item.arch}\t{item.version}\t{item.size}\t{took}\t{item.path}\t{item.sha256}"
        )


def _print_comparison(found: list) -> None:
    from edgefaas.lab.artifacts import ARCHES

    def cell(item) -> str:
        if item is None:
            return "not built"
        took = "-" if item.build_seconds is None else f"{item.build_seconds:.0f} s"
        return f"{item.size / 1e6:.1f} MB, {took}"

    by_name: dict[str, dict[str, object]] = {}
    for item in found:
        by_name.setdefault(item.name, {})[item.arch] = item
    click.echo(
        f"{'ARTIFACT':<22} " + " ".join(f"{arch.upper():<22}" for arch in ARCHES) + " ARM64/AMD64 SIZE"
    )
    for name, builds in by_name.items():
        amd, arm = builds.get("amd64"), builds.get("arm64")
        ratio = f"{arm.size / amd.size:.2f}x" if amd and arm and amd.size else "-"
        click.echo(f"{name:<22} " + " ".join(f"{cell(builds.get(a)):<22}" for a in ARCHES) + f" {ratio}")


def _attach_subcommands() -> None:
    from edgefaas.gateway.cli import gateway
    from edgefaas.gateway.sync import sync_functions
    from edgefaas.nodeauth.cli import nodeauth
    from edgefaas.parsec.cli import parsec
    from edgefaas.sonic.announce_cli import announce_command
    from edgefaas.sonic.cli import config_db_group

    main.add_command(parsec)
    main.add_command(config_db_group)
    main.add_command(announce_command)
    main.add_command(gateway)
    main.add_command(nodeauth)
    main.add_command(sync_functions)


_attach_subcommands()


def _attach_perf() -> None:
    from edgefaas.perf.cli import perf

    main.add_command(perf)


_attach_perf()


def _lab_name(name: str | None) -> str:
    from edgefaas.lab.state import DEFAULT_LAB

    return name or os.environ.get("EDGEFAAS_LAB", DEFAULT_LAB)


def _print_status(name: str) -> None:
    from edgefaas.lab.lifecycle import status
    from edgefaas.lab.state import StateError

    try:
        rows = status(name)
    except StateError as exc:
        _fail(str(exc))
    click.echo(f"{'DEVICE':<12} {'PROFILE':<8} {'ROLES':<12} {'ADDRESS':<15} STATE")
    for row in rows:
        click.echo(f"{row.name:<12} {row.profile:<8} {','.join(row.roles):<12} {row.address:<15} {row.state}")


if __name__ == "__main__":
    main()
