"""An OpenFaaS client's session against an EdgeFaaS gateway: the HTTP requests faas-cli's proxy
package makes, in the order each of its commands makes them, with its bodies, query strings and
headers (the <name>.<namespace> forms included).

login, version, namespace list, secret create/list, deploy from a stack file (PUT, then POST on
404, as `faas-cli deploy` does), list, describe, invoke (sync with headers and query, async),
logs (whole, then followed), secret update and a redeploy, secret remove, remove. A secret's
value reaches the function's file and never appears in an answer.

The same session runs against a gateway on loopback with the local backend
(tests/unit/test_openfaas_cli_session.py) and against a lab or real site's gateway on K3S
(tests/integration/test_edgefaas.py): pods take seconds to start and to roll, so each step that
waits for one retries until `ready_s`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

USER_AGENT = "faas-cli/0.17.0"
SECRET_VALUE = "s3cret-value-never-shown"
NEW_SECRET_VALUE = "rotated-s3cret-value"

# What a python3-http function's handler looks like; EdgeFaaS runs it from source.
HANDLER = '''"""Says hello, proves it can read its secret (by a digest, never the value)."""

import hashlib


def handle(event, context):
    key = context.secret("{secret}")
    context.log("called with " + event.query.get("who", "nobody"))
    return {{
        "hello": event.query.get("who"),
        "header": event.headers.get("X-Tenant"),
        "body": event.text,
        "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
    }}
'''


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class Session:
    """`cli`: a client with the gateway's base URL, the admin's credentials and faas-cli's
    User-Agent; `license_token()` makes a license and answers its token (faas-cli's invoke sends
    none, so a private function needs one)."""

    cli: httpx.Client
    namespace: str
    orchestration: str
    license_token: Callable[[], str]
    function: str = "hello"
    secret: str = "api-key"
    ready_s: float = 10.0
    answers: list[httpx.Response] = field(default_factory=list)

    @property
    def file_secret(self) -> str:
        return f"{self.secret}.pem"

    def send(self, method: str, path: str, **kwargs) -> httpx.Response:
        answer = self.cli.request(method, path, **kwargs)
        self.answers.append(answer)
        return answer

    def until(self, what: str, attempt: Callable[[], httpx.Response | None]) -> httpx.Response:
        """The first answer `attempt` gives (None: not yet), tried until `ready_s` has passed."""
        deadline = time.monotonic() + self.ready_s
        while True:
            answer = attempt()
            if answer is not None:
                return answer
            if time.monotonic() > deadline:
                last = self.answers[-1] if self.answers else None
                raise AssertionError(f"{what} within {self.ready_s:.0f} s; last answer: {_shown(last)}")
            time.sleep(0.5)

    def stack_deployment(self, env: str) -> dict:
        """types.FunctionDeployment as faas-cli marshals a stack file's function (Go's omitempty: no
        limits or requests when the stack file gives none; labels and annotations always sent)."""
        return {
            "service": self.function,
            "image": "ghcr.io/openfaas/python3-http:latest",
            "namespace": self.namespace,
            "envVars": {"GREETING": env},
            "secrets": [self.secret],
            "labels": {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "3"},
            "annotations": {"edgefaas.io/code": HANDLER.format(secret=self.secret), "topic": "greetings"},
        }

    def run(self) -> None:
        ns, name = self.namespace, self.function
        # faas-cli login: GET /system/functions with the credentials, 200 (401 for wrong ones).
        wrong = self.send("GET", "/system/functions", auth=("admin", "wrong"))
        assert wrong.status_code == 401, _shown(wrong)
        assert self.send("GET", "/system/functions").status_code == 200
        # faas-cli version: the gateway's and the provider's versions.
        info = self.send("GET", "/system/info").json()
        assert info["provider"]["orchestration"] == self.orchestration and "release" in info["version"]
        # faas-cli namespace list.
        assert ns in self.send("GET", "/system/namespaces").json()
        assert self.send("GET", f"/system/namespace/{ns}").json()["name"] == ns

        # faas-cli secret create --from-literal=... ; then --from-file (rawValue), list.
        body = {"name": self.secret, "namespace": ns, "value": SECRET_VALUE}
        created = self.send("POST", "/system/secrets", json=body)
        assert created.status_code == 201, _shown(created)
        again = self.send("POST", "/system/secrets", json={"name": self.secret, "value": "x"})
        assert again.status_code == 409, _shown(again)
        raw = base64.b64encode(b"\x00binary\xff").decode()
        from_file = self.send("POST", "/system/secrets", json={"name": self.file_secret, "rawValue": raw})
        assert from_file.status_code == 201, _shown(from_file)
        listed = self.send("GET", "/system/secrets", params={"namespace": ns}).json()
        mine = [s for s in listed if s["name"] in (self.secret, self.file_secret)]
        assert mine == [{"name": self.secret, "namespace": ns}, {"name": self.file_secret, "namespace": ns}]
        bad_name = self.send("POST", "/system/secrets", json={"name": "Not_A_DNS_Name", "value": "x"})
        assert bad_name.status_code == 400 and "body.name" in bad_name.json()["error"]
        bad_raw = self.send("POST", "/system/secrets", json={"name": "other", "rawValue": "!!not base64"})
        assert bad_raw.status_code == 400 and "rawValue" in bad_raw.json()["error"]
        other_ns = self.send("GET", "/system/secrets", params={"namespace": "openfaas-fn"})
        assert other_ns.status_code == 400 and "namespace" in other_ns.json()["error"]

        # faas-cli deploy -f stack.yml: PUT first (update is the default), POST when it answers 404.
        missing = self.send("PUT", "/system/functions", json=self.stack_deployment("hi"))
        assert missing.status_code == 404, _shown(missing)
        deployed = self.send("POST", "/system/functions", json=self.stack_deployment("hi"))
        assert deployed.status_code == 202, _shown(deployed)
        no_secret = {**self.stack_deployment("hi"), "service": f"{name}-other", "secrets": ["nope"]}
        refused = self.send("POST", "/system/functions", json=no_secret)
        assert refused.status_code == 400 and "secrets[0]" in refused.json()["error"], _shown(refused)

        # faas-cli list; faas-cli describe (usage=1, namespace).
        functions = self.send("GET", "/system/functions", params={"namespace": ns}).json()
        assert name in [f["name"] for f in functions]
        params = {"namespace": ns, "usage": "1"}
        described = self.send("GET", f"/system/function/{name}", params=params).json()
        assert described["namespace"] == ns and described["secrets"] == [self.secret]
        assert described["annotations"].get("topic") == "greetings"
        assert "edgefaas.io/code" not in described["annotations"]  # the source is not an annotation kept

        # faas-cli invoke NAME --namespace NS -H X-Tenant=acme --query who=ana: /function/NAME.NS
        invoke = f"/function/{name}.{ns}"
        headers = {"Content-Type": "text/plain", "X-Tenant": "acme"}
        # invoke sends no credentials: not public, 401, which faas-cli reports as "unauthorized".
        anonymous = self.send("POST", f"{invoke}?who=ana", content=b"some text", headers=headers, auth=None)
        assert anonymous.status_code == 401, _shown(anonymous)
        licensed = {**headers, "Authorization": f"Bearer {self.license_token()}"}
        ana = {"content": b"some text", "headers": licensed, "auth": None}
        invoked = self.until(
            f"{name} to answer after its deploy", lambda: _ok(self.send("POST", f"{invoke}?who=ana", **ana))
        )
        result = invoked.json()
        assert result["hello"] == "ana" and result["header"] == "acme" and result["body"] == "some text"
        assert result["key_sha256"] == _digest(SECRET_VALUE)
        assert self.send("POST", f"/function/{name}.openfaas-fn", auth=None).status_code == 404
        bob = self.send("POST", f"{invoke}?who=bob", headers=licensed, auth=None)
        assert bob.status_code == 200, _shown(bob)

        # faas-cli invoke --async: 202 and a call id.
        queued = self.send("POST", f"/async-function/{name}.{ns}?who=async", headers=licensed, auth=None)
        assert queued.status_code == 202 and queued.headers["X-Call-Id"], _shown(queued)

        self._logs(licensed)

        # faas-cli secret update, then deploy again: PUT answers 200 (a rolling update).
        updated = self.send("PUT", "/system/secrets", json={"name": self.secret, "value": NEW_SECRET_VALUE})
        assert updated.status_code == 200, _shown(updated)
        rolled = self.send("PUT", "/system/functions", json=self.stack_deployment("hello again"))
        assert rolled.status_code == 200, _shown(rolled)
        self.until(
            f"{name} to read the updated secret after its rolling update",
            lambda: _ok(
                self.send("POST", invoke, headers=licensed, auth=None),
                lambda a: a.json().get("key_sha256") == _digest(NEW_SECRET_VALUE),
            ),
        )

        # faas-cli secret remove (namespace in the body); faas-cli remove.
        body = {"name": self.file_secret, "namespace": ns}
        assert self.send("DELETE", "/system/secrets", json=body).status_code == 200
        assert self.send("DELETE", "/system/secrets", json={"name": self.file_secret}).status_code == 404
        body = {"functionName": name, "namespace": ns}
        assert self.send("DELETE", "/system/functions", json=body).status_code == 200
        assert self.send("DELETE", "/system/functions", json=body).status_code == 404
        assert name not in [f["name"] for f in self.send("GET", "/system/functions").json()]

        # The secret's value was never answered.
        for answer in self.answers:
            for value in (SECRET_VALUE, NEW_SECRET_VALUE):
                assert value not in answer.text, (answer.request.method, answer.request.url)

    def _logs(self, licensed: dict[str, str]) -> None:
        ns, name = self.namespace, self.function
        # faas-cli logs NAME --tail=false: tail=-1, follow=false, every line as log messages.
        params = {"name": name, "namespace": ns, "follow": "false", "tail": "-1"}

        def whole() -> httpx.Response | None:
            logs = self.send("GET", "/system/logs", params=params)
            assert logs.status_code == 200 and logs.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in logs.text.splitlines()]
            # The async call is the last one made, and runs when its worker takes it: until its
            # line is in, a later read may show more lines than this one.
            done = sum("called with" in m["text"] for m in lines) >= 3
            return logs if done and any(m["text"].endswith("called with async") for m in lines) else None

        messages = [
            json.loads(line)
            for line in self.until("3 calls, async last, in the logs", whole).text.splitlines()
        ]
        assert all(set(m) == {"name", "namespace", "instance", "timestamp", "text"} for m in messages)
        assert all(m["name"] == name and m["namespace"] == ns for m in messages)
        assert all(m["instance"].startswith(f"{name}-") and m["timestamp"].endswith("Z") for m in messages)
        last_two = self.send("GET", "/system/logs", params={"name": name, "tail": "2"})
        assert [json.loads(line) for line in last_two.text.splitlines()] == messages[-2:]

        # faas-cli logs NAME (tail defaults to following): new lines arrive while the request is open.
        followed: list[dict] = []

        def follow() -> None:
            params = {"name": name, "namespace": ns, "follow": "true", "tail": "1"}
            with self.cli.stream("GET", "/system/logs", params=params) as answer:
                assert answer.status_code == 200
                for line in answer.iter_lines():
                    followed.append(json.loads(line))
                    if any("followed" in m["text"] for m in followed):
                        return

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        time.sleep(0.5)
        called = self.send("POST", f"/function/{name}.{ns}?who=followed", headers=licensed, auth=None)
        assert called.status_code == 200, _shown(called)
        reader.join(20)
        assert not reader.is_alive(), followed
        assert followed[0]["timestamp"] >= messages[-1]["timestamp"]  # tail=1: the last line first
        assert any(m["text"].endswith("called with followed") for m in followed)


Check = Callable[[httpx.Response], bool]


def _ok(answer: httpx.Response, good: Check | None = None) -> httpx.Response | None:
    return answer if answer.status_code == 200 and (good is None or good(answer)) else None


def _shown(answer: httpx.Response | None) -> str:
    if answer is None:
        return "none"
    return f"{answer.request.method} {answer.request.url.path}: {answer.status_code} {answer.text[:300]}"
