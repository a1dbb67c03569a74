"""`edgefaas nodeauth ...`: the authentication server and agent, and the operator's admit/revoke."""

from __future__ import annotations

import json
import logging
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import click

from edgefaas.nodeauth.admission import ADMISSION_PORT
from edgefaas.nodeauth.enrollment import ENROLL_PORT
from edgefaas.nodeauth.server import AGENT_PORT
from edgefaas.nodeauth.tls import CA_PEM

STATE_DIR = Path("/var/lib/edgefaas/nodeauth")
ENROLLMENT_KEY = Path("/etc/edgefaas/nodeauth/enrollment.key")


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _read_key(path: Path) -> bytes:
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        _fail(f"cannot read the enrollment key {path}: {exc.strerror}")
    if len(key) < 32:
        _fail(f"the enrollment key in {path} is shorter than 32 bytes")
    return key


def _serve_until_signalled(server, loop=None) -> None:
    stop = threading.Event()

    def shutdown(signum: int, frame: object) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    if loop is not None:
        threading.Thread(target=loop, args=(stop,), daemon=True, name="review").start()
    server.serve_forever()


state_dir_option = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=STATE_DIR,
    show_default=True,
    help="Where certificates and the server's records are kept.",
)


ca_file_option = click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=CA_PEM,
    show_default=True,
    help="The blueprint's CA certificate (PEM) the server is verified against.",
)


def _client_context_or_raise(ca_file: Path):
    from edgefaas.nodeauth.tls import client_context

    if not ca_file.is_file():
        raise FileNotFoundError(f"no CA certificate at {ca_file}")
    return client_context(ca_file)


def _client_context(ca_file: Path):
    from edgefaas.nodeauth.tls import client_context

    if not ca_file.is_file():
        _fail(f"no CA certificate at {ca_file}: `edgefaas nodeauth trust` fetches it (the deploy does)")
    return client_context(ca_file)


enrollment_key_option = click.option(
    "--enrollment-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=ENROLLMENT_KEY,
    show_default=True,
    help="The key every node's enrollment secret derives from (root and the server read it).",
)


@click.group("nodeauth")
def nodeauth() -> None:
    """Edge-node certification through Parsec (Scenario 2, Demo 1).

    \b
    On the K3S server:   edgefaas nodeauth server --kubeconfig K --exempt sonic-1
    On every K3S agent:  edgefaas nodeauth trust --server-url URL --secret-file F
                         edgefaas nodeauth enroll --server-url URL --secret-file F
                         edgefaas nodeauth agent --server-address ADDRESS
    Operator, on the server:
      edgefaas nodeauth revoke NODE    remove NODE now and refuse its certificates
      edgefaas nodeauth admit NODE     lift the ban, print NODE's enrollment secret
      edgefaas nodeauth status         what the server decided for each node
    deploys/nodeauth.py does the first three for every device in the inventory.
    """


@nodeauth.command("server")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), required=True)
@state_dir_option
@enrollment_key_option
@click.option("--exempt", multiple=True, help="Nodes never challenged (the K3S server itself). Repeatable.")
@click.option("--listen", default="0.0.0.0", show_default=True)
@click.option(
    "--port", default=ENROLL_PORT, show_default=True, help="The enrollment and status endpoint (HTTPS)."
)
@click.option(
    "--tls-name",
    multiple=True,
    help="A name (address or DNS name) clients reach the endpoint at, for its certificate. Repeatable; "
    "default 127.0.0.1 and this host's name.",
)
@click.option("--agent-port", default=AGENT_PORT, show_default=True)
@click.option("--interval", default=1.0, show_default=True, help="Seconds between reviews of new nodes.")
@click.option("--recheck", default=30.0, show_default=True, help="Seconds between reviews of every node.")
@click.option(
    "--grace", default=120.0, show_default=True, help="Seconds a node may wait for its agent to start."
)
@click.option("--agent-timeout", default=3.0, show_default=True, help="Seconds an agent has to answer.")
@click.option(
    "--clock-tolerance",
    default=30.0,
    show_default=True,
    help="Seconds a node's clock may be off from this server's before it is reported.",
)
@click.option(
    "--admission-port",
    default=ADMISSION_PORT,
    show_default=True,
    help="HTTPS port of the Parsec tenant admission webhook, on --admission-listen (0: none).",
)
@click.option(
    "--admission-listen",
    default="127.0.0.1",
    show_default=True,
    help="The webhook's address: the API server beside it calls it on loopback.",
)
def server_command(
    kubeconfig: Path,
    state_dir: Path,
    enrollment_key_file: Path,
    exempt: tuple[str, ...],
    listen: str,
    port: int,
    tls_name: tuple[str, ...],
    agent_port: int,
    interval: float,
    recheck: float,
    grace: float,
    agent_timeout: float,
    clock_tolerance: float,
    admission_port: int,
    admission_listen: str,
) -> None:
    """Certify every node that joins K3S; remove the ones that cannot prove their certificate.

    Also serves the Parsec tenant admission webhook (edgefaas.parsec.tenancy) over HTTPS with a
    certificate from the same CA.
    """
    from kubernetes import config

    from edgefaas.nodeauth.kube import KubernetesNodes
    from edgefaas.nodeauth.service import NodeAuthService, serve
    from edgefaas.parsec.client import ParsecClient

    _logging()
    key = _read_key(enrollment_key_file)
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        api = config.new_client_from_config(str(kubeconfig))
    except Exception as exc:  # any reason the kubeconfig is unusable
        _fail(f"cannot use kubeconfig {kubeconfig}: {exc}")
    service = NodeAuthService(
        ParsecClient(),
        KubernetesNodes(api),
        state_dir,
        key,
        set(exempt),
        agent_port,
        interval=interval,
        recheck=recheck,
        grace=grace,
        agent_timeout=agent_timeout,
        clock_tolerance=clock_tolerance,
    )
    from edgefaas.nodeauth.tls import ServerTls

    names = list(dict.fromkeys(tls_name or ("127.0.0.1", socket.gethostname())))
    server_tls = ServerTls(service.ca, names)
    threading.Thread(target=server_tls.keep_renewed, args=(threading.Event(),), daemon=True).start()
    http = serve(service, listen, port, server_tls.context)
    if admission_port:
        from edgefaas.nodeauth.admission import namespace_uids, serve_admission

        tls = ServerTls(service.ca, [admission_listen])
        webhook = serve_admission(namespace_uids(api), admission_listen, admission_port, tls)
        threading.Thread(target=webhook.serve_forever, daemon=True, name="admission").start()
        threading.Thread(target=tls.keep_renewed, args=(threading.Event(),), daemon=True).start()
        logging.getLogger("edgefaas.nodeauth").info(
            "Parsec tenant admission webhook on https://%s:%d", admission_listen, admission_port
        )
    logging.getLogger("edgefaas.nodeauth").info(
        "authentication server on https://%s:%d (certified for %s), agents on port %d, exempt %s",
        listen,
        port,
        ", ".join(names),
        agent_port,
        sorted(exempt),
    )
    _serve_until_signalled(http, service.run)


@nodeauth.command("agent")
@click.option("--server-address", multiple=True, required=True, help="Who may challenge (repeatable).")
@state_dir_option
@click.option("--listen", default="0.0.0.0", show_default=True)
@click.option("--port", default=AGENT_PORT, show_default=True)
def agent_command(server_address: tuple[str, ...], state_dir: Path, listen: str, port: int) -> None:
    """Answer the authentication server's challenges with this node's Parsec-held key."""
    from edgefaas.nodeauth.agent import Agent, serve
    from edgefaas.nodeauth.certificates import NODE_KEY
    from edgefaas.nodeauth.enrollment import CERTIFICATE_FILE
    from edgefaas.parsec.client import ParsecClient

    _logging()
    agent = Agent(ParsecClient(), state_dir / CERTIFICATE_FILE, server_address, NODE_KEY)
    logging.getLogger("edgefaas.nodeauth").info(
        "authentication agent on %s:%d for %s", listen, port, ", ".join(server_address)
    )
    _serve_until_signalled(serve(agent, listen, port))


@nodeauth.command("enroll")
@click.option("--server-url", required=True, help="The server's endpoint, e.g. https://10.77.0.2:8472.")
@click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--node", default=None, help="This node's K3S name [default: the host name].")
@click.option("--check", is_flag=True, help='Only print "valid" or "needed" (what a deploy asks).')
@ca_file_option
@state_dir_option
def enroll_command(
    server_url: str, secret_file: Path, node: str | None, check: bool, ca_file: Path, state_dir: Path
) -> None:
    """Get this node a certificate for its Parsec-held key, unless it holds a valid one.

    Prints "enrolled" or "unchanged".
    """
    from edgefaas.nodeauth.enrollment import EnrollmentRefused, enroll, fetch_ca, holds_valid_certificate
    from edgefaas.parsec.client import ParsecClient
    from edgefaas.parsec.errors import ParsecError

    name = node or socket.gethostname()
    if check:
        try:
            context = _client_context_or_raise(ca_file)
            ca = fetch_ca(server_url.rstrip("/"), context)
            valid = holds_valid_certificate(ParsecClient(), state_dir, name, ca)
        except (OSError, ValueError, KeyError, ParsecError) as exc:
            click.echo(f"needed ({exc})")
            return
        click.echo("valid" if valid else "needed")
        return

    try:
        secret = secret_file.read_text().strip()
    except OSError as exc:
        _fail(f"cannot read the enrollment secret {secret_file}: {exc.strerror}")
    context = _client_context(ca_file)
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        issued = enroll(ParsecClient(), server_url.rstrip("/"), name, secret, state_dir, context)
    except EnrollmentRefused as exc:
        _fail(f"enrollment of {name} refused: {exc}")
    except (OSError, urllib.error.URLError) as exc:
        _fail(f"cannot reach the authentication server at {server_url}: {exc}")
    except ParsecError as exc:
        _fail(f"Parsec on this node: {exc}")
    click.echo("enrolled" if issued else "unchanged")


@nodeauth.command("admission-config")
@click.option(
    "--webhook-url",
    default=f"https://127.0.0.1:{ADMISSION_PORT}/v1/admit",
    show_default=True,
    help="Where the API server calls the webhook.",
)
@ca_file_option
def admission_config_command(webhook_url: str, ca_file: Path) -> None:
    """Print the Parsec tenant webhook's ValidatingWebhookConfiguration (JSON, for kubectl apply),
    trusting the blueprint's CA (--ca-file)."""
    from edgefaas.parsec.tenancy import webhook_configuration

    try:
        pem = ca_file.read_bytes()
    except OSError as exc:
        _fail(f"no CA certificate at {ca_file}: {exc.strerror}")
    click.echo(json.dumps(webhook_configuration(pem, webhook_url), indent=2, sort_keys=True))


@nodeauth.command("trust")
@click.option("--server-url", required=True, help="The server's endpoint, e.g. https://10.77.0.2:8472.")
@click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--node", default=None, help="This node's K3S name [default: the host name].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=CA_PEM, show_default=True)
def trust_command(server_url: str, secret_file: Path, node: str | None, out: Path) -> None:
    """Fetch the blueprint's CA certificate from the server, proven by this node's enrollment
    secret (which is not sent), and write it to --out (PEM, 0644). Prints "trusted" or "unchanged"."""
    from edgefaas.nodeauth.enrollment import EnrollmentRefused, bootstrap_ca
    from edgefaas.nodeauth.tls import pem_certificate

    try:
        secret = secret_file.read_text().strip()
    except OSError as exc:
        _fail(f"cannot read the enrollment secret {secret_file}: {exc.strerror}")
    try:
        pem = pem_certificate(bootstrap_ca(server_url.rstrip("/"), node or socket.gethostname(), secret))
    except EnrollmentRefused as exc:
        _fail(str(exc))
    except (OSError, ValueError, KeyError) as exc:
        _fail(f"no CA certificate from the authentication server at {server_url}: {exc}")
    click.echo(_publish(pem, out))


@nodeauth.command("export-ca")
@state_dir_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=CA_PEM, show_default=True)
def export_ca_command(state_dir: Path, out: Path) -> None:
    """On the server: publish the CA certificate it made (PEM, 0644) at --out, where this host's
    clients trust it. Prints "trusted" or "unchanged"."""
    from edgefaas.nodeauth.enrollment import CA_FILE
    from edgefaas.nodeauth.tls import pem_certificate

    try:
        der = (state_dir / CA_FILE).read_bytes()
    except OSError as exc:
        _fail(f"no CA certificate in {state_dir} (has the server started?): {exc.strerror}")
    click.echo(_publish(pem_certificate(der), out))


def _publish(pem: bytes, out: Path) -> str:
    import os
    import tempfile

    if out.is_file() and out.read_bytes() == pem:
        return "unchanged"
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    return "trusted"


@nodeauth.command("revoke")
@click.argument("node")
@state_dir_option
def revoke_command(node: str, state_dir: Path) -> None:
    """Revoke NODE: the server removes it at once and refuses it until `admit`."""
    from edgefaas.nodeauth.enrollment import Records

    serials = Records(state_dir).revoke(node)
    click.echo(f"revoked {node}: serials {', '.join(serials) or '(none issued)'}")


@nodeauth.command("admit")
@click.argument("node")
@state_dir_option
@enrollment_key_option
def admit_command(node: str, state_dir: Path, enrollment_key_file: Path) -> None:
    """Let NODE enroll (lifting a revocation) and print its enrollment secret."""
    from edgefaas.nodeauth.enrollment import Records, enrollment_secret

    if Records(state_dir).admit(node):
        click.echo(f"lifted the revocation of {node} (its old certificates stay revoked)", err=True)
    click.echo(enrollment_secret(_read_key(enrollment_key_file), node))


@nodeauth.command("status")
@click.option("--url", default=f"https://127.0.0.1:{ENROLL_PORT}", show_default=True)
@ca_file_option
def status_command(url: str, ca_file: Path) -> None:
    """What the server last decided for each node, and what one authentication costs.

    CLOCK S: the node's clock minus the server's, marked ! when beyond the server's tolerance.
    """
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=_client_context(ca_file))
    )
    try:
        with opener.open(f"{url.rstrip('/')}/v1/status", timeout=5) as reply:
            status = json.loads(reply.read())
    except (OSError, ValueError) as exc:
        _fail(f"no status from {url}: {exc}")
    click.echo(f"{'NODE':<16} {'ACTION':<12} {'MS':>8} {'CLOCK S':>9}  REASON")
    for name, last in sorted(status["nodes"].items()):
        skew = last.get("clock_skew_s")
        clock = "-" if skew is None else f"{skew:+.1f}" + ("!" if last.get("clock_skew_reported") else "")
        ms = last["seconds"] * 1000
        click.echo(f"{name:<16} {last['action']:<12} {ms:>8.1f} {clock:>9}  {last['reason']}")
    click.echo(f"authentications: {status['authentications']}, p50 {status['auth_ms_p50']} ms")
