"""``edgefaas gateway``: backend choice and the URL functions reach the gateway at."""

import pytest
from click.testing import CliRunner

from edgefaas.gateway import cli

pytestmark = pytest.mark.unit


def test_kubernetes_is_refused_until_its_backend_exists(monkeypatch):
    monkeypatch.setattr(cli, "available_backends", lambda: ["local"])
    result = CliRunner().invoke(cli.gateway, ["--backend", "kubernetes"])
    assert result.exit_code == 1
    assert "kubernetes backend is not available yet" in result.output


def test_auto_picks_local_without_kubernetes_or_kubeconfig(monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "available_backends", lambda: ["local"])
    assert cli.choose_backend("auto") == "local"
    monkeypatch.setattr(cli, "available_backends", lambda: ["local", "kubernetes"])
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
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
