"""Running a command on an inventory host over plain `ssh`, reached as pyinfra reaches it.

The scans stream archives through stdin and stdout of one SSH session, which pyinfra's
operations do not offer; the host's connection settings are still read from the same
inventory data pyinfra uses (ssh_hostname, ssh_port, ssh_user, ssh_key, known hosts), so the
virtual lab and a real lab are reached the same way.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CONNECT_TIMEOUT_S = 10


class RemoteError(RuntimeError):
    """A host could not be reached or a command on it failed; the message says which and why."""


@dataclass(frozen=True)
class Host:
    name: str
    data: Mapping[str, Any]

    @property
    def address(self) -> str:
        return str(self.data.get("ssh_hostname") or self.name)

    @property
    def user(self) -> str | None:
        return self.data.get("ssh_user") or None

    @property
    def needs_sudo(self) -> bool:
        # A real lab logs in as an admin account with sudo, the virtual lab as `admin` too.
        return self.user not in (None, "root") or bool(self.data.get("_sudo"))


def ssh_argv(host: Host, remote_command: str) -> list[str]:
    """The `ssh` command line that runs `remote_command` (one shell string) on `host`."""
    data = host.data
    if data.get("ssh_password"):
        raise RemoteError(f"{host.name}: password logins are not supported by the scans; give an ssh_key")
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "LogLevel=ERROR"]
    if data.get("ssh_port"):
        argv += ["-p", str(int(data["ssh_port"]))]
    if data.get("ssh_key"):
        argv += ["-i", os.path.expanduser(str(data["ssh_key"])), "-o", "IdentitiesOnly=yes"]
    if data.get("ssh_known_hosts_file"):
        argv += ["-o", f"UserKnownHostsFile={os.path.expanduser(str(data['ssh_known_hosts_file']))}"]
    # pyinfra's default: a new host key is learnt, a changed one refused.
    strict = str(data.get("ssh_strict_host_key_checking") or "accept-new")
    argv += ["-o", f"StrictHostKeyChecking={strict}"]
    target = f"{host.user}@{host.address}" if host.user else host.address
    return [*argv, target, remote_command]


def as_root(host: Host, script: str) -> str:
    """`script` (POSIX sh) run as root on `host`: through `sudo -n` unless logged in as root."""
    command = f"sh -c {shlex.quote(script)}"
    return f"sudo -n {command}" if host.needs_sudo else command


def run(
    host: Host, remote_command: str, stdin: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """Run `remote_command` on `host`; RemoteError when SSH itself fails or the command times out."""
    argv = ssh_argv(host, remote_command)
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RemoteError(f"{host.name}: no answer within {timeout:.0f} s") from None
    if done.returncode == 255:  # ssh's own failure: unreachable, refused key, changed host key
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise RemoteError(f"{host.name} ({host.address}): ssh failed: {reason[-1] if reason else 'exit 255'}")
    return done
