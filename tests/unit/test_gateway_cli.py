"""``edgefaas gateway``: backend choice and the URL functions reach the gateway at."""

import click
import pytest
from click.testing import CliRunner

from edgefaas.gateway import cli

pytestmark = pytest.mark.unit


def test_an_unknown_backend_is_refused(tmp_path):
    result = CliRunner().invoke(cli.gateway, ["--backend", "nomad"])
    assert result.exit_code == 2
    assert "Invalid value for '--backend'" in result.output
    for kind in ("auto", "local", "kubernetes"):
        assert f"'{kind}'" in result.output
    with pytest.raises(click.ClickException, match="there is no nomad backend"):
        cli.make_backend("nomad", tmp_path, "http://127.0.0.1:8080")


def test_an_explicit_backend_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    assert cli.choose_backend("local") == "local"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(cli, "K3S_KUBECONFIG", tmp_path / "absent.yaml")
    assert cli.choose_backend("kubernetes") == "kubernetes"


def test_auto_picks_local_without_a_kubeconfig(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(cli, "K3S_KUBECONFIG", tmp_path / "absent.yaml")
    assert cli.choose_backend("auto") == "local"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    assert cli.choose_backend("auto") == "kubernetes"


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("10.0.0.5", "http://10.0.0.5:8080"),
        ("::", "http://127.0.0.1:8080"),
    ],
)
def test_functions_reach_the_gateway_on_loopback_when_it_listens_everywhere(host, url):
    assert cli._gateway_url(host, 8080) == url


def test_port_zero_is_refused():
    result = CliRunner().invoke(cli.gateway, ["--port", "0"])
    assert result.exit_code == 2 and "--port" in result.output


def test_the_async_queue_options_reach_the_settings(monkeypatch, tmp_path):
    import uvicorn

    from edgefaas.gateway import app

    seen = []
    monkeypatch.setattr(cli, "make_backend", lambda *args, **kwargs: object())
    monkeypatch.setattr(app, "create_app", lambda settings, backend: seen.append(settings))
    # Serving is uvicorn's: nothing binds or serves here.
    monkeypatch.setattr(cli, "listening_socket", lambda host, port: None)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    env = {"EDGEFAAS_GATEWAY_NATS_URL": "nats://10.0.0.1:4222,nats://10.0.0.2:4222"}
    args = ["--backend", "local", "--data-dir", str(tmp_path), "--admin-password", "pw"]
    result = CliRunner().invoke(
        cli.gateway, [*args, "--nats-replicas", "3", "--callback-attempts", "2"], env=env
    )
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert settings.nats_url == env["EDGEFAAS_GATEWAY_NATS_URL"] and settings.nats_replicas == 3
    assert settings.callback_attempts == 2 and settings.callback_backoff == 1.0
    bad = CliRunner().invoke(cli.gateway, [*args, "--nats-url", "http://10.0.0.1:4222"])
    assert bad.exit_code == 2 and "--nats-url" in bad.output and "not a NATS server URL" in bad.output
