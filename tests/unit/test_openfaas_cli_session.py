"""An OpenFaaS client's session against a real gateway (local backend, real function processes):
the HTTP requests faas-cli's proxy package makes, in the order its commands make them, with its
bodies, query strings and headers (the <name>.<namespace> forms included).

login, version, namespace list, secret create/list/update, deploy from a stack file (PUT, then
POST on 404, as `faas-cli deploy` does), list, describe, invoke (sync with headers and query,
async), update, logs (whole, then followed), secret remove, remove. A secret's value reaches the
function's file and never appears in an answer or in the function's log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time

import httpx
import pytest

from .live_gateway import LiveGateway

pytestmark = pytest.mark.unit

PASSWORD = "cli-session-password"
SECRET_VALUE = "s3cret-value-never-shown"
NEW_SECRET_VALUE = "rotated-s3cret-value"
NAMESPACE = "local"
USER_AGENT = "faas-cli/0.17.0"

# What a python3-http function's handler looks like; EdgeFaaS runs it from source.
HANDLER = '''"""Says hello, proves it can read its secret (by a digest, never the value)."""

import hashlib


def handle(event, context):
    key = context.secret("api-key")
    context.log("called with " + event.query.get("who", "nobody"))
    return {
        "hello": event.query.get("who"),
        "header": event.headers.get("X-Tenant"),
        "body": event.text,
        "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
    }
'''


def stack_deployment(env: str) -> dict:
    """types.FunctionDeployment as faas-cli marshals a stack file's function (Go's omitempty:
    no limits or requests when the stack file gives none; labels and annotations always sent)."""
    return {
        "service": "hello",
        "image": "ghcr.io/openfaas/python3-http:latest",
        "namespace": NAMESPACE,
        "envVars": {"GREETING": env},
        "secrets": ["api-key"],
        "labels": {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "3"},
        "annotations": {"edgefaas.io/code": HANDLER, "topic": "greetings"},
    }


@pytest.fixture(name="live")
def live_fixture(tmp_path):
    gateway = LiveGateway(tmp_path, PASSWORD)
    yield gateway
    gateway.stop()


def test_a_faas_cli_session(live, caplog):
    caplog.set_level(logging.DEBUG)
    cli = httpx.Client(
        base_url=live.url,
        auth=("admin", PASSWORD),
        headers={"User-Agent": USER_AGENT},
        timeout=30,
        trust_env=False,
    )
    answers: list[httpx.Response] = []

    def send(method: str, path: str, **kwargs) -> httpx.Response:
        answer = cli.request(method, path, **kwargs)
        answers.append(answer)
        return answer

    # faas-cli login: GET /system/functions with the credentials, 200 (401 for wrong ones).
    assert (
        httpx.get(f"{live.url}/system/functions", auth=("admin", "wrong"), trust_env=False).status_code == 401
    )
    assert send("GET", "/system/functions").status_code == 200
    # faas-cli version: the gateway's and the provider's versions.
    info = send("GET", "/system/info").json()
    assert info["provider"]["orchestration"] == "local" and "release" in info["version"]
    # faas-cli namespace list.
    assert send("GET", "/system/namespaces").json() == [NAMESPACE]
    assert send("GET", f"/system/namespace/{NAMESPACE}").json()["name"] == NAMESPACE

    # faas-cli secret create api-key --from-literal=... ; then --from-file (rawValue), list, update.
    created = send(
        "POST", "/system/secrets", json={"name": "api-key", "namespace": NAMESPACE, "value": SECRET_VALUE}
    )
    assert created.status_code == 201, created.text
    assert send("POST", "/system/secrets", json={"name": "api-key", "value": "x"}).status_code == 409
    raw = base64.b64encode(b"\x00binary\xff").decode()
    assert send("POST", "/system/secrets", json={"name": "cert.pem", "rawValue": raw}).status_code == 201
    listed = send("GET", "/system/secrets", params={"namespace": NAMESPACE}).json()
    assert listed == [
        {"name": "api-key", "namespace": NAMESPACE},
        {"name": "cert.pem", "namespace": NAMESPACE},
    ]
    bad_name = send("POST", "/system/secrets", json={"name": "Not_A_DNS_Name", "value": "x"})
    assert bad_name.status_code == 400 and "body.name" in bad_name.json()["error"]
    bad_raw = send("POST", "/system/secrets", json={"name": "other", "rawValue": "!!not base64"})
    assert bad_raw.status_code == 400 and "rawValue" in bad_raw.json()["error"]
    other_ns = send("GET", "/system/secrets", params={"namespace": "openfaas-fn"})
    assert other_ns.status_code == 400 and "namespace" in other_ns.json()["error"]

    # faas-cli deploy -f stack.yml: PUT first (update is the default), POST when it answers 404.
    missing = send("PUT", "/system/functions", json=stack_deployment("hi"))
    assert missing.status_code == 404
    deployed = send("POST", "/system/functions", json=stack_deployment("hi"))
    assert deployed.status_code == 202, deployed.text
    no_secret = {**stack_deployment("hi"), "service": "other", "secrets": ["nope"]}
    refused = send("POST", "/system/functions", json=no_secret)
    assert refused.status_code == 400 and "secrets[0]" in refused.json()["error"]

    # faas-cli list; faas-cli describe hello (usage=1, namespace).
    functions = send("GET", "/system/functions", params={"namespace": NAMESPACE}).json()
    assert [f["name"] for f in functions] == ["hello"]
    described = send("GET", "/system/function/hello", params={"namespace": NAMESPACE, "usage": "1"}).json()
    assert described["namespace"] == NAMESPACE and described["secrets"] == ["api-key"]
    assert described["annotations"] == {"topic": "greetings"}  # the source is not an annotation kept

    # faas-cli invoke hello --namespace local -H X-Tenant=acme --query who=ana: /function/hello.local
    invoked = send(
        "POST",
        f"/function/hello.{NAMESPACE}?who=ana",
        content=b"some text",
        headers={"Content-Type": "text/plain", "X-Tenant": "acme"},
        auth=None,  # invoke sends no credentials: the function is called as OpenFaaS calls it
    )
    # Not public: 401, which faas-cli reports as "unauthorized access"; a license's token calls it.
    assert invoked.status_code == 401, invoked.text
    token = live.admin.post("/system/licenses", json={"name": "cli", "plan": "standard"}).json()["token"]
    invoked = send(
        "POST",
        f"/function/hello.{NAMESPACE}?who=ana",
        content=b"some text",
        headers={"Content-Type": "text/plain", "X-Tenant": "acme", "Authorization": f"Bearer {token}"},
        auth=None,
    )
    assert invoked.status_code == 200, invoked.text
    token_header = invoked.request.headers.get("Authorization")
    result = invoked.json()
    assert result["hello"] == "ana" and result["header"] == "acme" and result["body"] == "some text"
    assert result["key_sha256"] == hashlib.sha256(SECRET_VALUE.encode()).hexdigest()
    assert send("POST", "/function/hello.openfaas-fn", auth=None).status_code == 404

    # faas-cli invoke --async: 202 and a call id.
    queued = send(
        "POST",
        f"/async-function/hello.{NAMESPACE}?who=async",
        headers={"Authorization": token_header},
        auth=None,
    )
    assert queued.status_code == 202 and queued.headers["X-Call-Id"]

    # faas-cli secret update, then deploy again: PUT answers 200 (a rolling update).
    updated = send("PUT", "/system/secrets", json={"name": "api-key", "value": NEW_SECRET_VALUE})
    assert updated.status_code == 200
    rolled = send("PUT", "/system/functions", json=stack_deployment("hello again"))
    assert rolled.status_code == 200, rolled.text
    again = send("POST", f"/function/hello.{NAMESPACE}", headers={"Authorization": token_header}, auth=None)
    assert again.json()["key_sha256"] == hashlib.sha256(NEW_SECRET_VALUE.encode()).hexdigest()

    # faas-cli logs hello --tail=false: tail=-1, follow=false, every line as log messages.
    deadline = time.monotonic() + 10
    while True:
        logs = send(
            "GET",
            "/system/logs",
            params={"name": "hello", "namespace": NAMESPACE, "follow": "false", "tail": "-1"},
        )
        assert logs.status_code == 200 and logs.headers["content-type"].startswith("application/x-ndjson")
        messages = [json.loads(line) for line in logs.text.splitlines()]
        if sum("called with" in m["text"] for m in messages) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    called = [m for m in messages if "called with" in m["text"]]
    assert len(called) >= 3, messages
    assert all(set(m) == {"name", "namespace", "instance", "timestamp", "text"} for m in messages)
    assert all(m["name"] == "hello" and m["namespace"] == NAMESPACE for m in messages)
    assert all(m["instance"].startswith("hello-") and m["timestamp"].endswith("Z") for m in messages)
    last_two = send("GET", "/system/logs", params={"name": "hello", "tail": "2"})
    assert [json.loads(line) for line in last_two.text.splitlines()] == messages[-2:]

    # faas-cli logs hello (tail defaults to following): new lines arrive while the request is open.
    followed: list[dict] = []

    def follow() -> None:
        params = {"name": "hello", "namespace": NAMESPACE, "follow": "true", "tail": "1"}
        with cli.stream("GET", "/system/logs", params=params) as answer:
            assert answer.status_code == 200
            for line in answer.iter_lines():
                followed.append(json.loads(line))
                if any("followed" in m["text"] for m in followed):
                    return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    time.sleep(0.5)
    send(
        "POST",
        f"/function/hello.{NAMESPACE}?who=followed",
        headers={"Authorization": token_header},
        auth=None,
    )
    reader.join(20)
    assert not reader.is_alive(), followed
    assert followed[0]["timestamp"] >= messages[-1]["timestamp"]  # tail=1: the last line first
    assert any(m["text"].endswith("called with followed") for m in followed)

    # faas-cli secret remove api-key (namespace in the body); faas-cli remove hello.
    removed_secret = send("DELETE", "/system/secrets", json={"name": "cert.pem", "namespace": NAMESPACE})
    assert removed_secret.status_code == 200
    assert send("DELETE", "/system/secrets", json={"name": "cert.pem"}).status_code == 404
    removed = send("DELETE", "/system/functions", json={"functionName": "hello", "namespace": NAMESPACE})
    assert removed.status_code == 200
    assert (
        send(
            "DELETE", "/system/functions", json={"functionName": "hello", "namespace": NAMESPACE}
        ).status_code
        == 404
    )
    assert send("GET", "/system/functions").json() == []
    cli.close()

    # The secret's value was never answered, logged by the gateway, or written to the function's log.
    for answer in answers:
        for value in (SECRET_VALUE, NEW_SECRET_VALUE):
            assert value not in answer.text, (answer.request.method, answer.request.url)
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
