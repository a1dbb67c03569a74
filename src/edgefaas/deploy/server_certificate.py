"""A service's TLS certificate from the blueprint's CA, inside a pyinfra deploy.

The gateway and the registry get theirs the same way (`edgefaas gateway certificate`): a
secret that admits this host to the authentication server's issuer, a oneshot unit that asks
for the certificate, a timer that runs it twice a day, and one run now when the certificate
held is not current for the names or when the secret or the unit changed. Each service keeps
its own unit template beside its deploy: who owns the files and what must reload them differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

from edgefaas.deploy import hosts
from edgefaas.deploy.facts import ServerCertificate
from edgefaas.deploy.secrets import enrollment_key
from edgefaas.deploy.services import keep_running
from edgefaas.nodeauth.enrollment import ENROLL_PORT
from edgefaas.nodeauth.server_certificates import server_secret
from edgefaas.nodeauth.tls import CA_PEM


@dataclass(frozen=True)
class CertifiedService:
    """What a service's certificate needs: `unit` names `<unit>.service.j2` and `<unit>.timer`
    in `templates`; the key and certificate are read as `user`, the secret as `secret_group`."""

    what: str
    unit: str
    templates: Path
    user: str
    venv: str
    cert: str
    key: str
    secret_file: str
    secret_group: str = "root"
    secret_mode: str = "600"


def certificate_from_ca(service: CertifiedService, names: list[str], server_host: Any, **unit: Any) -> Any:
    """Keep `service` holding a certificate for `names` from the CA on `server_host` (the K3S
    server); `unit` adds to the oneshot unit template's variables. Returns the run's operation."""
    secret = files.put(
        name=f"Install the secret that admits {service.what} to a TLS certificate (0{service.secret_mode})",
        src=StringIO(server_secret(enrollment_key(host), host.name) + "\n"),
        dest=service.secret_file,
        user="root",
        group=service.secret_group,
        mode=service.secret_mode,
    )
    issuer = files.template(
        name=f"Install the {service.unit} unit (gets and renews {service.what}'s certificate)",
        src=str(service.templates / f"{service.unit}.service.j2"),
        dest=f"/etc/systemd/system/{service.unit}.service",
        service_user=service.user,
        venv=service.venv,
        server_url=f"https://{hosts.address(server_host)}:{ENROLL_PORT}",
        secret_file=service.secret_file,
        host_name=host.name,
        names=names,
        cert=service.cert,
        key=service.key,
        ca_file=CA_PEM,
        **unit,
    )
    timer = files.put(
        name=f"Install the {service.unit} timer (twice a day)",
        src=str(service.templates / f"{service.unit}.timer"),
        dest=f"/etc/systemd/system/{service.unit}.timer",
        mode="644",
    )
    held = host.get_fact(
        ServerCertificate,
        user=service.user,
        venv=service.venv,
        names=names,
        cert=service.cert,
        key=service.key,
        ca_file=str(CA_PEM),
    )
    run = server.shell(
        name=f"Get {service.what} a certificate from the blueprint's CA for {', '.join(names)} ({held})",
        commands=[
            "systemctl daemon-reload",
            f"systemctl start {service.unit}.service || "
            f"{{ journalctl -u {service.unit} -n 20 --no-pager >&2; exit 1; }}",
        ],
        _if=lambda: held != "current" or any_changed(secret, issuer)(),
    )
    renewal = f"the renewal timer of {service.what}'s certificate"
    keep_running(f"{service.unit}.timer", renewal, timer.did_change, "a new timer")
    return run
