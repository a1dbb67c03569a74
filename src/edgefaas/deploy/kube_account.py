"""A service's own Kubernetes account, from inside a pyinfra deploy on the K3S server.

Services that run beside K3S on the server (the EdgeFaaS gateway, the node authentication
server) do not use K3S's admin kubeconfig (root-only, cluster-admin): each gets a
ServiceAccount with the rights its task template grants, and a kubeconfig holding that
account's token that only the service's user can read. The account is applied whenever
the service's own kubeconfig cannot do what it must (first run, or someone deleted it),
so a re-run with nothing missing changes nothing.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, QuoteString, StringCommand
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import files, python, server

WRITER_TEMPLATE = Path(__file__).resolve().parents[3] / "templates" / "k3s" / "service-kubeconfig.sh.j2"


class KubeAccess(FactBase):
    """Whether `kubeconfig` is readable and allowed every `kubectl auth can-i` check given."""

    def command(self, kubeconfig: str, checks: Sequence[str]) -> str:
        can = f"kubectl --kubeconfig {shlex.quote(kubeconfig)} auth can-i"
        asked = " && ".join(f"{can} {check} >/dev/null 2>&1" for check in checks)
        return f"test -r {shlex.quote(kubeconfig)} && {asked} && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return [line.strip() for line in output] == ["yes"]


def service_account(
    *,
    what: str,
    template: Path,
    rbac_file: str,
    account: str,
    namespace: str,
    kubeconfig: str,
    service_user: str,
    checks: Sequence[str],
    **template_data: Any,
) -> Any:
    """Apply `template` (the account and its rights) and write `kubeconfig`; the writing op.

    The returned op changed when the service must restart to pick a new token up.
    """
    writer = f"/usr/local/sbin/edgefaas-kubeconfig-{account}"
    rbac = files.template(
        name=f"Write the {what}'s Kubernetes account and rights",
        src=str(template),
        dest=rbac_file,
        mode="644",
        namespace=namespace,
        account=account,
        **template_data,
    )
    files.template(
        name=f"Install the {what}'s kubeconfig writer",
        src=str(WRITER_TEMPLATE),
        dest=writer,
        mode="755",
        namespace=namespace,
        secret=f"{account}-token",
        account=account,
        path=kubeconfig,
        service_user=service_user,
        server=f"https://127.0.0.1:{host.data.get('k3s_api_port', 6443)}",
        timeout=60,
    )
    has_access = host.get_fact(KubeAccess, kubeconfig=kubeconfig, checks=list(checks))
    applied = server.shell(
        name=f"Give the {what} its own Kubernetes account ({account})",
        commands=[f"kubectl apply -f {rbac_file}"],
        _if=lambda: rbac.did_change() or not has_access,
    )
    return server.shell(
        name=f"Write the {what}'s kubeconfig from its account's token (0600)",
        commands=[writer],
        _if=applied.did_change,
    )


def copy_from_server(
    *,
    what: str,
    server_host: Any,
    kubeconfig: str,
    api_url: str,
    service_user: str,
    checks: Sequence[str],
) -> Any:
    """On a host beside the cluster (not the K3S server): the same account's kubeconfig, copied from
    the server where `service_account` wrote it, pointing at `api_url` instead of the server's
    loopback. Copied when this host's kubeconfig cannot do what it must; the op, or None.

    Read at run time, after the server's operations above this line made the account, so a
    first deploy needs no second run.
    """
    has_access = host.get_fact(KubeAccess, kubeconfig=kubeconfig, checks=list(checks))
    if has_access:
        return None

    # pyinfra passes (state, host) to a callback whose parameters have those names.
    def copy(state: Any, host: Any) -> None:
        status, output = server_host.run_shell_command(
            StringCommand("cat", QuoteString(kubeconfig)), _sudo=True
        )
        if not status:
            raise DeployError(
                f"{host.name}: cannot read the {what}'s kubeconfig {kubeconfig} on the K3S server "
                f"{server_host.name}: {output.stderr or 'no output'}"
            )
        text = "\n".join(output.stdout_lines) + "\n"
        local = [line for line in text.splitlines() if line.strip().startswith("server: https://127.0.0.1:")]
        if len(local) != 1:
            raise DeployError(
                f"{host.name}: the {what}'s kubeconfig on {server_host.name} names no loopback API server"
            )
        text = text.replace(local[0], local[0].split("server:")[0] + f"server: {api_url}")
        done = host.put_file(StringIO(text), kubeconfig, remote_temp_filename=None, _sudo=True)
        if not done:
            raise DeployError(f"{host.name}: could not write {kubeconfig}")
        path = QuoteString(kubeconfig)
        owner = f"{service_user}:{service_user}"
        host.run_shell_command(StringCommand("chown", owner, path, "&&", "chmod", "600", path), _sudo=True)

    return python.call(
        name=f"Copy the {what}'s kubeconfig from the K3S server {server_host.name} (its API at {api_url})",
        function=copy,
    )
