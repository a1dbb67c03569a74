"""``edgefaas gateway``: serve the gateway (attached to the top-level ``edgefaas`` group)."""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

from edgefaas.backends.base import Backend

from .config import GatewaySettings
from .sites import SiteSettings, site_options

if TYPE_CHECKING:
    from .database import Database


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/edgefaas/gateway")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "edgefaas/gateway"


# K3S's own kubeconfig: on the K3S server host (where the gateway runs) it is the obvious one.
K3S_KUBECONFIG = Path("/etc/rancher/k3s/k3s.yaml")


def _kubeconfig_present(kubeconfig: Path | None = None) -> bool:
    return bool(
        kubeconfig
        or os.environ.get("KUBECONFIG")
        or os.environ.get("KUBERNETES_SERVICE_HOST")
        or (Path.home() / ".kube/config").exists()
        or os.access(K3S_KUBECONFIG, os.R_OK)
    )


def choose_backend(requested: str, kubeconfig: Path | None = None) -> str:
    """``auto``: kubernetes when a kubeconfig is given, found or in-cluster; else local."""
    if requested == "auto":
        return "kubernetes" if _kubeconfig_present(kubeconfig) else "local"
    return requested


def make_backend(
    kind: str,
    data_dir: Path,
    gateway_url: str,
    *,
    kubeconfig: Path | None = None,
    namespace: str = "edgefaas-fn",
    runtime_image: str | None = None,
    gateway_ca: str = "",
) -> Backend:
    if kind == "local":
        from edgefaas.backends.local import LocalBackend

        return LocalBackend(data_dir / "local", gateway_url=gateway_url, gateway_ca=gateway_ca)
    if kind == "kubernetes":
        try:
            from edgefaas.backends.kubernetes import KubernetesBackend
        except ImportError as exc:
            raise click.ClickException(
                f"the kubernetes backend needs the kubernetes client (pip install 'edgefaas[gateway]'): {exc}"
            ) from exc
        if not runtime_image:
            raise click.ClickException(
                "the kubernetes backend needs --runtime-image: the function runtime image every node "
                "has imported (docker.io/edgefaas/runtime:<key>, see `edgefaas lab artifacts`)"
            )
        return KubernetesBackend(
            runtime_image, gateway_url, namespace=namespace, kubeconfig=kubeconfig, gateway_ca=gateway_ca
        )
    raise click.ClickException(f"there is no {kind} backend: choose local or kubernetes")


def _server_implementation() -> tuple[str, str]:
    """uvicorn's event loop and HTTP parser: uvloop and httptools (the gateway extra), else asyncio, h11.

    Both in C, they roughly halve the gateway's own CPU per request; uvicorn would pick them
    silently, so their absence is said here rather than found later as lost throughput.
    """
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    if (loop, http) != ("uvloop", "httptools"):
        logging.getLogger("edgefaas.gateway").warning(
            "serving on %s and %s: install uvloop and httptools (edgefaas[gateway]) for about half "
            "the CPU per request",
            loop,
            http,
        )
    return loop, http


def _gateway_url(host: str, port: int, tls: bool = False) -> str:
    # Functions on this machine reach the gateway on loopback when it listens everywhere.
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in reachable:
        reachable = f"[{reachable}]"
    return f"{'https' if tls else 'http'}://{reachable}:{port}"


def _read_ca(path: Path) -> str:
    """The CA certificate's PEM text; BadParameter naming the file when it is not one."""
    try:
        pem = path.read_text()
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise ValueError("no certificate in it")
        ssl.create_default_context(cadata=pem)
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise click.BadParameter(
            f"{path} is not a readable PEM certificate: {exc}", param_hint="--ca-file"
        ) from None
    return pem


def service_ports(wan_plan: Path | None, api_port: int) -> list[int]:
    """The WAN plan's service port, when there is a plan (and it is not the API port)."""
    from edgefaas.sonic.announce import PlanError, load_plan

    if wan_plan is None:
        return []
    try:
        plan = load_plan(wan_plan)
    except PlanError as exc:
        raise click.BadParameter(str(exc), param_hint="--wan-plan") from None
    if plan is None:
        logging.getLogger("edgefaas.gateway").warning("%s does not exist: no WAN listener", wan_plan)
        return []
    return [] if plan.service_port == api_port else [plan.service_port]


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for uvicorn, which serves several (the API port and the WAN service port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


@click.group("gateway", invoke_without_command=True)
@click.option(
    "--backend",
    type=click.Choice(["auto", "local", "kubernetes"]),
    default="auto",
    show_default=True,
    help="Where functions run; auto picks kubernetes when a kubeconfig is found, else local.",
)
@click.option("--host", default="0.0.0.0", show_default=True, envvar="EDGEFAAS_GATEWAY_HOST")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(1, 65535), envvar="EDGEFAAS_GATEWAY_PORT"
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="EDGEFAAS_DATA_DIR",
    help="Ledger, licenses, admin password, local functions (default /var/lib/edgefaas/gateway as root).",
)
@click.option(
    "--admin-password",
    envvar="EDGEFAAS_ADMIN_PASSWORD",
    help="The admin's password (default: <data-dir>/admin-password, made on first start).",
)
@click.option(
    "--max-body", default=10 * 1024 * 1024, show_default=True, type=click.IntRange(1), help="Bytes."
)
@click.option(
    "--upstream-timeout", default=60.0, show_default=True, type=click.FloatRange(0.1), help="Seconds."
)
@click.option(
    "--ledger-sync",
    type=click.Choice(["normal", "full"]),
    default="normal",
    show_default=True,
    help="normal: billed calls survive the gateway being killed; full: a power cut too (fsync per commit).",
)
@click.option(
    "--storage",
    "storage_url",
    envvar="EDGEFAAS_STORAGE_URL",
    help="sqlite:///path (default: gateway.db in the data dir) or postgresql://user:password@host:port/db "
    "(shared by several gateways).",
)
@click.option(
    "--idempotency-window",
    default=600.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    envvar="EDGEFAAS_IDEMPOTENCY_WINDOW",
    help="Seconds a caller's X-Call-Id replays its first answer instead of running (and billing) again.",
)
@click.option(
    "--idempotency-max-answer",
    default=1024 * 1024,
    show_default=True,
    type=click.IntRange(0),
    envvar="EDGEFAAS_IDEMPOTENCY_MAX_ANSWER",
    help="Bytes: larger answers are billed once but not kept, and a replay of one is answered 409.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="EDGEFAAS_KUBECONFIG",
    help="kubernetes: the kubeconfig to use (default: KUBECONFIG, ~/.kube/config, or in-cluster).",
)
@click.option(
    "--namespace",
    default="edgefaas-fn",
    show_default=True,
    envvar="EDGEFAAS_NAMESPACE",
    help="kubernetes: the namespace functions run in.",
)
@click.option(
    "--runtime-image",
    envvar="EDGEFAAS_RUNTIME_IMAGE",
    help="kubernetes: the function runtime image on every node (docker.io/edgefaas/runtime:<key>).",
)
@click.option(
    "--gateway-url",
    help="The URL functions call the gateway at (default: loopback for local; required for "
    "kubernetes when listening on every address, since pods cannot reach the host's loopback).",
)
@click.option(
    "--license-signer",
    type=click.Choice(["hmac", "parsec"]),
    default="hmac",
    show_default=True,
    envvar="EDGEFAAS_LICENSE_SIGNER",
    help="parsec: sign license tokens with an ECDSA key held in Parsec (tamper-proof; the private key "
    "never leaves the service). hmac: a random key in the data dir.",
)
@click.option(
    "--parsec-endpoint",
    envvar="PARSEC_SERVICE_ENDPOINT",
    help="With --license-signer parsec: the service's socket (default unix:/run/parsec/parsec.sock).",
)
@click.option(
    "--wan-plan",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="EDGEFAAS_WAN_PLAN",
    help="The switch's WAN plan (/etc/edgefaas/wan.json): functions served at their own addresses on "
    "its service port, beside the API port. Unset, or no file at start: no WAN listener.",
)
@click.option(
    "--nats-url",
    envvar="EDGEFAAS_GATEWAY_NATS_URL",
    help="NATS servers with JetStream, comma-separated (nats://10.0.0.1:4222,nats://10.0.0.2:4222): async "
    "calls queue there, shared by every gateway, and survive restarts. Default: in memory, one gateway.",
)
@click.option(
    "--nats-replicas",
    default=1,
    show_default=True,
    type=click.IntRange(1, 5),
    envvar="EDGEFAAS_GATEWAY_NATS_REPLICAS",
    help="Copies of the async queue's stream in the NATS cluster (3 keeps it through a server's loss).",
)
@click.option(
    "--async-workers",
    default=8,
    show_default=True,
    type=click.IntRange(1, 1000),
    envvar="EDGEFAAS_GATEWAY_ASYNC_WORKERS",
    help="Async calls this gateway runs at once.",
)
@click.option(
    "--async-queue-size",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    envvar="EDGEFAAS_GATEWAY_ASYNC_QUEUE_SIZE",
    help="Queued async calls at most (all gateways with NATS); past it 429.",
)
@click.option(
    "--callback-attempts",
    default=5,
    show_default=True,
    type=click.IntRange(1, 100),
    envvar="EDGEFAAS_GATEWAY_CALLBACK_ATTEMPTS",
    help="Tries of an async call's callback (5xx, 408, 429 and connection errors are retried).",
)
@click.option(
    "--callback-backoff",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    envvar="EDGEFAAS_GATEWAY_CALLBACK_BACKOFF",
    help="Seconds before a callback's second try; doubling after each, at most 30.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="EDGEFAAS_GATEWAY_TLS_CERT",
    help="Serve HTTPS only, with this certificate (PEM; `edgefaas gateway certificate` gets one from the "
    "blueprint's CA). A renewed file is picked up without a restart.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="EDGEFAAS_GATEWAY_TLS_KEY",
    help="The certificate's private key (PEM, 0600).",
)
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="EDGEFAAS_GATEWAY_CA_FILE",
    help="The CA that signed --tls-cert (the blueprint's, /etc/edgefaas/ca.pem on every node): handed to "
    "functions, which verify the gateway by it when they call each other.",
)
@click.option(
    "--metrics-auth/--no-metrics-auth",
    default=False,
    show_default=True,
    envvar="EDGEFAAS_GATEWAY_METRICS_AUTH",
    help="Serve /metrics only with the admin's basic credentials (Prometheus's basic_auth). "
    "Default: open, as OpenFaaS's gateway serves it.",
)
@click.option(
    "--prometheus-url",
    envvar="EDGEFAAS_GATEWAY_PROMETHEUS_URL",
    help="The site's Prometheus (http://127.0.0.1:9090 where deploys/monitoring.py runs it): the console's "
    "live plots read from it through /system/plots, a fixed set of queries. Default: no plots.",
)
@click.option(
    "--prometheus-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="EDGEFAAS_GATEWAY_PROMETHEUS_CA",
    help="The CA an https:// --prometheus-url is verified by (default: the system's).",
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning"])
)
@click.pass_context
@site_options
def gateway(
    ctx: click.Context,
    backend: str,
    host: str,
    port: int,
    data_dir: Path | None,
    admin_password: str | None,
    max_body: int,
    upstream_timeout: float,
    ledger_sync: str,
    storage_url: str | None,
    idempotency_window: float,
    idempotency_max_answer: int,
    kubeconfig: Path | None,
    namespace: str,
    runtime_image: str | None,
    gateway_url: str | None,
    license_signer: str,
    parsec_endpoint: str | None,
    wan_plan: Path | None,
    nats_url: str | None,
    nats_replicas: int,
    async_workers: int,
    async_queue_size: int,
    callback_attempts: int,
    callback_backoff: float,
    tls_cert: Path | None,
    tls_key: Path | None,
    ca_file: Path | None,
    metrics_auth: bool,
    prometheus_url: str | None,
    prometheus_ca: Path | None,
    log_level: str,
    sites: SiteSettings | None,
) -> None:
    """Serve the EdgeFaaS gateway: OpenFaaS's API, deploying from source, licenses, billing.

    With a subcommand (backup, restore, check-ledger), run that instead of serving.
    """
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from edgefaas.parsec.errors import ParsecError

    from .app import create_app
    from .async_queue import parse_servers
    from .database import StorageUnavailable

    logging.basicConfig(
        stream=sys.stderr, level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if log_level != "debug":
        # httpx logs each request to a function at INFO: a line per call would flood the journal.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    kind = choose_backend(backend, kubeconfig)
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together: HTTPS needs both")
    tls_context = None
    if tls_cert is not None and tls_key is not None:
        from .tls import server_context

        try:
            tls_context = server_context(tls_cert, tls_key)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--tls-cert/--tls-key") from None
    gateway_ca = _read_ca(ca_file) if ca_file is not None else ""
    if nats_url:
        try:
            parse_servers(nats_url)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--nats-url") from None
    if prometheus_url and not prometheus_url.startswith(("http://", "https://")):
        raise click.BadParameter(
            f"{prometheus_url!r} is not an http:// or https:// URL", param_hint="--prometheus-url"
        )
    if prometheus_ca is not None and not prometheus_ca.is_file():
        raise click.BadParameter(f"{prometheus_ca} does not exist", param_hint="--prometheus-ca")
    if kubeconfig is not None and not kubeconfig.is_file():
        raise click.BadParameter(f"{kubeconfig} does not exist", param_hint="--kubeconfig")
    if gateway_url is None:
        if kind == "kubernetes" and host in ("0.0.0.0", "::", ""):
            raise click.UsageError(
                "--gateway-url is required with the kubernetes backend when the gateway listens on every "
                "address: give the address pods reach this host at (e.g. http://10.77.0.11:8080)"
            )
        gateway_url = _gateway_url(host, port, tls=tls_context is not None)
    settings = GatewaySettings(
        data_dir=(data_dir or default_data_dir()).resolve(),
        admin_password=admin_password,
        max_body_bytes=max_body,
        upstream_timeout=upstream_timeout,
        ledger_sync="full" if ledger_sync == "full" else "normal",
        storage_url=storage_url,
        idempotency_window=idempotency_window,
        idempotency_max_answer_bytes=idempotency_max_answer,
        license_signer="parsec" if license_signer == "parsec" else "hmac",
        parsec_endpoint=parsec_endpoint,
        wan_plan=wan_plan,
        nats_url=nats_url or None,
        nats_replicas=nats_replicas,
        async_workers=async_workers,
        async_queue_size=async_queue_size,
        callback_attempts=callback_attempts,
        callback_backoff=callback_backoff,
        sites=sites,
        metrics_auth=metrics_auth,
        prometheus_url=prometheus_url or None,
        prometheus_ca=prometheus_ca,
    )
    try:
        function_backend = make_backend(
            kind,
            settings.data_dir,
            gateway_url,
            kubeconfig=kubeconfig,
            namespace=namespace,
            runtime_image=runtime_image,
            gateway_ca=gateway_ca,
        )
        app = create_app(settings, function_backend)
    except (OSError, ValueError, NotImplementedError, RuntimeError, ParsecError, StorageUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
    if not admin_password:
        click.echo(f"admin password: {settings.admin_password_file} (user admin)", err=True)
    loop, http = _server_implementation()
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=log_level == "debug", loop=loop, http=http
    )
    ports = [port, *service_ports(wan_plan, port)]
    try:
        sockets = [listening_socket(host, p) for p in ports]
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}: {exc}") from exc
    if tls_context is not None and tls_cert is not None and tls_key is not None:
        import threading

        from .tls import CertificateReloader

        # Every port speaks TLS alone: a plain-HTTP request gets no answer (its bytes are not a
        # TLS handshake), so no password or token is ever read off a cleartext connection.
        config.load()
        config.ssl = tls_context
        reloader = CertificateReloader(tls_context, tls_cert, tls_key)
        threading.Thread(target=reloader.run, args=(threading.Event(),), daemon=True, name="tls").start()
    server = uvicorn.Server(config)
    if tls_context is not None:
        from .tls import TlsServer

        server = TlsServer(config)
    server.run(sockets=sockets)


@gateway.command("certificate")
@click.option("--server-url", help="The authentication server, e.g. https://10.77.0.11:8472.")
@click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--host", "host_name", help="This host's inventory name (its secret is for it).")
@click.option(
    "--name",
    "names",
    multiple=True,
    required=True,
    help="An address or DNS name clients reach this gateway at. Repeatable; the first is the subject.",
)
@click.option("--cert", "cert_path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("/etc/edgefaas/ca.pem"),
    show_default=True,
)
@click.option(
    "--check",
    is_flag=True,
    help="Ask nothing and change nothing: print `current`, or `renew: <why>`, for the certificate held.",
)
def certificate_command(
    server_url: str | None,
    secret_file: Path | None,
    host_name: str | None,
    names: tuple[str, ...],
    cert_path: Path,
    key_path: Path,
    ca_file: Path,
    check: bool,
) -> None:
    """Get this gateway a TLS certificate from the blueprint's CA for its --name(s), its key made
    here (never sent), unless the one held serves them for a while yet. Prints "unchanged" or
    "issued: <why>"."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from edgefaas.nodeauth.enrollment import EnrollmentRefused
    from edgefaas.nodeauth.server_certificates import ensure_server_certificate, renewal_reason
    from edgefaas.nodeauth.tls import client_context

    try:
        ca_pem = ca_file.read_bytes()
        ca_der = x509.load_pem_x509_certificate(ca_pem).public_bytes(serialization.Encoding.DER)
    except OSError as exc:
        raise click.ClickException(f"cannot read the CA {exc.filename}: {exc.strerror}") from None
    except ValueError as exc:
        raise click.ClickException(f"{ca_file} holds no PEM certificate: {exc}") from None
    if check:
        held = [path.read_bytes() if path.is_file() else None for path in (cert_path, key_path)]
        reason = renewal_reason(held[0], held[1], names, ca_der)
        click.echo("current" if reason is None else f"renew: {reason}")
        return
    missing = [
        flag
        for flag, value in (
            ("--server-url", server_url),
            ("--secret-file", secret_file),
            ("--host", host_name),
        )
        if not value
    ]
    if missing:
        raise click.UsageError(f"{', '.join(missing)} needed to ask for a certificate (all but --check)")
    assert server_url is not None and secret_file is not None and host_name is not None
    try:
        secret = secret_file.read_text().strip()
    except OSError as exc:
        raise click.ClickException(f"cannot read {exc.filename}: {exc.strerror}") from None
    try:
        reason = ensure_server_certificate(
            server_url.rstrip("/"),
            host_name,
            secret,
            names,
            key_path,
            cert_path,
            ca_der,
            client_context(ca_pem),
        )
    except EnrollmentRefused as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot reach the authentication server at {server_url}: {exc}") from None
    click.echo("unchanged" if reason is None else f"issued: {reason}")


_storage_option = click.option(
    "--storage",
    "storage_url",
    envvar="EDGEFAAS_STORAGE_URL",
    help="sqlite:///path or postgresql://... (default: gateway.db in the data dir).",
)
_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="EDGEFAAS_DATA_DIR",
    help="Where the default SQLite database is (default /var/lib/edgefaas/gateway as root).",
)


def _open_for_cli(storage_url: str | None, data_dir: Path | None) -> Database:
    from .database import StorageUnavailable
    from .storage import open_migrated

    url = storage_url or f"sqlite://{(data_dir or default_data_dir()).resolve() / 'gateway.db'}"
    try:
        return open_migrated(url)
    except (OSError, ValueError, RuntimeError, StorageUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc


@gateway.command("backup")
@_storage_option
@_data_dir_option
def backup_command(storage_url: str | None, data_dir: Path | None) -> None:
    """Write plans, licenses and the ledger to stdout as a versioned JSON-lines backup."""
    from .backup import write_backup
    from .database import StorageUnavailable

    db = _open_for_cli(storage_url, data_dir)
    try:
        counts = write_backup(db, sys.stdout)
    except StorageUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db.close()
    click.echo(f"backed up {counts}", err=True)


@gateway.command("restore")
@_storage_option
@_data_dir_option
@click.argument("backup_file", type=click.File("r"), default="-")
def restore_command(storage_url: str | None, data_dir: Path | None, backup_file: TextIO) -> None:
    """Restore a backup (a file, or - for stdin) into an EMPTY database; a non-empty one is refused."""
    from .backup import BackupError, restore
    from .database import StorageUnavailable

    db = _open_for_cli(storage_url, data_dir)
    try:
        counts = restore(db, backup_file)
    except (BackupError, StorageUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db.close()
    click.echo(f"restored {counts}", err=True)


@gateway.command("check-ledger")
@_storage_option
@_data_dir_option
def check_ledger_command(storage_url: str | None, data_dir: Path | None) -> None:
    """Check the ledger's integrity (read-only); exit 1 naming each problem found."""
    from .database import StorageUnavailable, open_database
    from .ledger_check import check_ledger

    url = storage_url or f"sqlite://{(data_dir or default_data_dir()).resolve() / 'gateway.db'}"
    if url.startswith("sqlite://") and not Path(url.removeprefix("sqlite://")).is_file():
        raise click.ClickException(f"no database at {url}")
    try:
        db = open_database(url)
    except (OSError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        result = check_ledger(db)
    except StorageUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db.close()
    if not result.ok:
        for problem in result.problems:
            click.echo(f"ledger problem: {problem}", err=True)
        raise SystemExit(1)
    amount = result.amount_micros / 1_000_000
    click.echo(f"ledger ok: {result.rows} calls billed to {result.licenses} payers, {amount:.6f} in all")
