"""``edgefaas gateway``: serve the gateway (attached to the top-level ``edgefaas`` group)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from edgefaas.backends import available_backends
from edgefaas.backends.base import Backend

from .config import GatewaySettings


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/edgefaas/gateway")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "edgefaas/gateway"


def _kubeconfig_present() -> bool:
    return bool(
        os.environ.get("KUBECONFIG")
        or os.environ.get("KUBERNETES_SERVICE_HOST")
        or (Path.home() / ".kube/config").exists()
    )


def choose_backend(requested: str) -> str:
    """``auto``: kubernetes when it is installed and a kubeconfig (or in-cluster) is found, else local."""
    available = available_backends()
    if requested == "auto":
        return "kubernetes" if "kubernetes" in available and _kubeconfig_present() else "local"
    if requested not in available:
        raise click.ClickException(f"the {requested} backend is not available yet in this installation")
    return requested


def make_backend(kind: str, data_dir: Path, gateway_url: str) -> Backend:
    if kind == "local":
        from edgefaas.backends.local import LocalBackend

        return LocalBackend(data_dir / "local", gateway_url=gateway_url)
    raise click.ClickException(f"the {kind} backend is not available yet in this installation")


def _gateway_url(host: str, port: int) -> str:
    # Functions on this machine reach the gateway on loopback when it listens everywhere.
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in reachable:
        reachable = f"[{reachable}]"
    return f"http://{reachable}:{port}"


@click.command("gateway")
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
    "--storage", "storage_url", envvar="EDGEFAAS_STORAGE_URL", help="sqlite:///path (default in data dir)."
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning"])
)
def gateway(
    backend: str,
    host: str,
    port: int,
    data_dir: Path | None,
    admin_password: str | None,
    max_body: int,
    upstream_timeout: float,
    ledger_sync: str,
    storage_url: str | None,
    log_level: str,
) -> None:
    """Serve the EdgeFaaS gateway: OpenFaaS's API, deploying from source, licenses, billing."""
    import uvicorn

    from .app import create_app

    logging.basicConfig(
        stream=sys.stderr, level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    kind = choose_backend(backend)
    settings = GatewaySettings(
        data_dir=(data_dir or default_data_dir()).resolve(),
        admin_password=admin_password,
        max_body_bytes=max_body,
        upstream_timeout=upstream_timeout,
        ledger_sync="full" if ledger_sync == "full" else "normal",
        storage_url=storage_url,
    )
    try:
        app = create_app(settings, make_backend(kind, settings.data_dir, _gateway_url(host, port)))
    except (OSError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not admin_password:
        click.echo(f"admin password: {settings.admin_password_file} (user admin)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
