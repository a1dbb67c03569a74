"""An OpenFaaS client's session (tests/openfaas_session.py: faas-cli's requests, in its order)
against a real gateway on loopback: local backend, real function processes. Here also: the
secret's value is in the function's file (0600) and in no log, the gateway's or the function's.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.openfaas_session import NEW_SECRET_VALUE, SECRET_VALUE, USER_AGENT, Session

from .live_gateway import LiveGateway

pytestmark = pytest.mark.unit

PASSWORD = "cli-session-password"
NAMESPACE = "local"


@pytest.fixture(name="live")
def live_fixture(tmp_path):
    gateway = LiveGateway(tmp_path, PASSWORD)
    yield gateway
    gateway.stop()


def test_a_faas_cli_session(live, caplog):
    caplog.set_level(logging.DEBUG)
    with httpx.Client(
        base_url=live.url,
        auth=("admin", PASSWORD),
        headers={"User-Agent": USER_AGENT},
        timeout=30,
        trust_env=False,
    ) as cli:
        license = {"name": "cli", "plan": "standard"}
        token = lambda: live.admin.post("/system/licenses", json=license).json()["token"]  # noqa: E731
        Session(cli, NAMESPACE, "local", token).run()
    assert live.admin.get("/system/functions").json() == []
    for value in (SECRET_VALUE, NEW_SECRET_VALUE):
        assert value not in caplog.text
        assert value not in (live.backend.functions_dir / "hello" / "function.log").read_text()
    secret_file = live.backend.data_dir / "secrets" / "api-key"
    assert secret_file.read_text() == NEW_SECRET_VALUE and secret_file.stat().st_mode & 0o077 == 0


def test_an_alert_scales_a_function_up_and_back_down(live):
    code = "def handle(event, context):\n    return 'ok'\n"
    labels = {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "4", "com.openfaas.scale.factor": "50"}
    deployed = live.admin.post("/system/functions", json={"service": "busy", "code": code, "labels": labels})
    assert deployed.status_code == 202, deployed.text

    def alert(status: str, function: str = f"busy.{NAMESPACE}") -> httpx.Response:
        # Alertmanager's webhook body (version 4), as its receiver POSTs it.
        return live.admin.post(
            "/system/alert",
            json={
                "version": "4",
                "status": status,
                "receiver": "scale-up",
                "groupKey": '{}:{alertname="APIHighInvocationRate"}',
                "alerts": [
                    {
                        "status": status,
                        "labels": {"alertname": "APIHighInvocationRate", "function_name": function},
                        "startsAt": "2024-05-01T12:00:00Z",
                    }
                ],
            },
        )

    replicas = lambda: live.functions()["busy"]["replicas"]  # noqa: E731
    assert alert("firing").status_code == 200 and replicas() == 3  # 1 + ceil(4 * 50 %)
    assert alert("firing").status_code == 200 and replicas() == 4  # capped at max
    assert live.functions()["busy"]["availableReplicas"] == 4
    assert alert("resolved").status_code == 200 and replicas() == 1  # back to min
    skipped = alert("firing", "ghost")
    assert skipped.status_code == 200 and skipped.json()["skipped"][0]["function_name"] == "ghost"
    for body in ({"alerts": [{"labels": {}}]}, {"status": "firing"}, {"alerts": "no"}, [1]):
        refused = live.admin.post("/system/alert", json=body)
        assert refused.status_code == 400, (body, refused.text)
    assert live.admin.post("/system/alert", content=b"not json").status_code == 400
