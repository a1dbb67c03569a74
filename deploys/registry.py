"""The site's OCI registry for image functions, and the example image function pushed to it.

    pyinfra -y inventories/lab.py deploys/registry.py

Debian's `docker-registry` (distribution v2) on the K3S server, HTTPS only with a certificate
from the blueprint's CA (the gateway's flow: `edgefaas gateway certificate`, a oneshot unit and
a renewal timer), htpasswd auth with one account (edgefaas.deploy.registry: its password a site
secret in edgefaas_secrets_dir, like the gateways'). Every K3S node pulls from it with that
account: deploys/k3s.py writes each node's /etc/rancher/k3s/registries.yaml (K3S's own config, so
its restarts stay in one file). Runs after nodeauth (the CA) and before edgefaas.

The example image function (functions/hello-image, built by `edgefaas lab build example-image`
without Docker) is copied to the server and pushed there with skopeo, as a user would push one;
tests/integration/test_image_functions.py deploys it from a stack file and calls it.

Lab devices cannot download packages: the lab rootfs carries docker-registry and skopeo with the
registry's unit disabled (edgefaas.lab.rootfs); apt here installs them on a real device.
"""

from io import StringIO
from pathlib import Path

from pyinfra import host, inventory, logger
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from edgefaas.backends.image_reference import registry_host
from edgefaas.deploy import hosts, registry
from edgefaas.deploy.artifacts import artifact
from edgefaas.deploy.control_plane_acl import open_ports
from edgefaas.deploy.facts import RegistryHasImage
from edgefaas.deploy.gateways import k3s_server
from edgefaas.deploy.secrets import gateway_secret
from edgefaas.deploy.server_certificate import CertifiedService, certificate_from_ca
from edgefaas.deploy.services import keep_running
from edgefaas.deploy.sites import site_inventory
from edgefaas.lab.builds.function_image import REPOSITORY
from edgefaas.nodeauth.tls import CA_PEM

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "registry"
CERTIFICATE_UNIT = "edgefaas-registry-certificate"
SERVER_SECRET = f"{registry.CONFIG_DIR}/server.secret"
PUSH_DIR = "/var/lib/edgefaas/registry-push"  # root only: the push account and the archive

server_host = k3s_server(site_inventory(host, inventory))
if hosts.k3s_role(host) != "server":
    logger.info(f"{host.name}: not the K3S server: no registry here")
else:
    address = hosts.address(host)
    where = registry_host(address, registry.PORT)
    password = gateway_secret(host, registry.PASSWORD_SECRET, "registry password")
    apt.packages(
        name="Install Debian's docker-registry (distribution v2) and skopeo",
        packages=["docker-registry", "skopeo"],
        no_recommends=True,
    )
    files.directory(
        name="Create the registry's configuration directory", path=registry.CONFIG_DIR, mode="755"
    )
    files.directory(
        name="Create the registry's storage",
        path=registry.STORAGE_DIR,
        user=registry.SERVICE_USER,
        group=registry.SERVICE_USER,
        mode="750",
    )
    # A fresh bcrypt salt differs on every run: only a missing or wrong entry is replaced.
    installed = host.get_fact(Command, command=f"cat {registry.HTPASSWD} 2>/dev/null || true") or ""
    current = registry.htpasswd_matches(installed, registry.USER, password)
    htpasswd = files.put(
        name="Install the registry's account (bcrypt htpasswd, 0640)",
        src=StringIO(registry.htpasswd_line(registry.USER, password)),
        dest=registry.HTPASSWD,
        user="root",
        group=registry.SERVICE_USER,
        mode="640",
        _if=lambda: not current,
    )
    config = files.template(
        name="Write the registry's configuration (HTTPS, htpasswd)",
        src=str(TEMPLATES / "config.yml.j2"),
        dest=registry.CONFIG,
        mode="644",
        storage_dir=registry.STORAGE_DIR,
        listen=f"{address}:{registry.PORT}",
        cert=registry.TLS_CERT,
        key=registry.TLS_KEY,
        htpasswd=registry.HTPASSWD,
    )
    dropin = files.template(
        name="Point Debian's docker-registry unit at the site's configuration",
        src=str(TEMPLATES / "docker-registry.service.d.conf.j2"),
        dest="/etc/systemd/system/docker-registry.service.d/edgefaas.conf",
        create_remote_dir=True,
        config=registry.CONFIG,
        storage_dir=registry.STORAGE_DIR,
    )
    names = list(dict.fromkeys([address, host.name, hosts.node_name(host)]))
    certificate_from_ca(
        CertifiedService(
            what="the registry",
            unit=CERTIFICATE_UNIT,
            templates=TEMPLATES,
            user=registry.SERVICE_USER,
            venv=host.data.edgefaas_venv,
            cert=registry.TLS_CERT,
            key=registry.TLS_KEY,
            secret_file=SERVER_SECRET,
        ),
        names,
        server_host,
    )
    open_ports(
        "edgefaas-registry", [f"{registry.PORT}/tcp OCI registry"], f"the registry {registry.PORT}/tcp"
    )
    systemd.daemon_reload(name="Reload systemd units", _if=dropin.did_change)
    keep_running(
        "docker-registry.service",
        "the site's registry",
        any_changed(htpasswd, config, dropin),
        "a new configuration",
    )

    # -- the example image function, pushed as a user would -------------------------------------
    example = artifact("example-image")
    files.directory(name="Create the push directory (root only)", path=PUSH_DIR, mode="700")
    pushed_archive = f"{PUSH_DIR}/hello-image.tar"
    files.put(
        name="Upload the example image function (an OCI archive, every architecture)",
        src=example.path,
        dest=pushed_archive,
        mode="600",
    )
    files.put(
        name="Install the push account for skopeo (0600)",
        src=StringIO(registry.auth_file(where, registry.USER, password)),
        dest=f"{PUSH_DIR}/auth.json",
        mode="600",
    )
    files.link(
        name="Give skopeo the blueprint's CA (its cert-dir layout: ca.crt)",
        path=f"{PUSH_DIR}/certs/ca.crt",
        target=str(CA_PEM),
        create_remote_dir=True,
    )
    reference = f"{where}/{REPOSITORY}:{example.version}"
    push = registry.push_argv(
        pushed_archive, example.version, reference, f"{PUSH_DIR}/certs", f"{PUSH_DIR}/auth.json"
    )
    # The tag is the build's content key: a registry that serves it holds this very image.
    pushed = host.get_fact(
        RegistryHasImage,
        reference=reference,
        cert_dir=f"{PUSH_DIR}/certs",
        authfile=f"{PUSH_DIR}/auth.json",
        service="docker-registry.service",
    )
    server.shell(
        name=f"Push the example image function as {reference} (skopeo; blobs already there are skipped)",
        commands=[" ".join(push)],
        _if=lambda: not pushed,
    )
