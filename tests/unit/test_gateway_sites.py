"""Cloud and edge sites for real: a cloud gateway and an edge gateway (live_gateway.py, each with
its local backend running functions as processes), talking HTTP to each other on loopback.

Functions published in the cloud reach the edge signed and run there; a tampered entry is
refused; a cloud-only function called at the edge runs in the cloud and is billed once, at the
edge; past a function's objective part of its calls run in the cloud; an answer that is not
the cloud's is refused; with the cloud stopped the edge serves on, and the roll-up of its usage
at the cloud is exact once it returns.
"""

from __future__ import annotations

import http.server
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edgefaas.gateway.catalogue import canonical, sha256
from edgefaas.gateway.sites import Objective, SiteSettings
from tests.site_function import code

from .live_gateway import LiveGateway, free_port

pytestmark = pytest.mark.unit

PASSWORD = "sites-test"


def eventually(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:g} s: {what}")


class Sites:
    """A cloud and one edge (edge-a) that knows it; edge-b is known to the cloud only."""

    def __init__(self, root: Path, objectives: dict[str, Objective] | None = None) -> None:
        self.root = root
        self.credentials = {"edge-a": secrets.token_urlsafe(24), "edge-b": secrets.token_urlsafe(24)}
        self.cloud_port = free_port()
        self.cloud = self.start_cloud()
        self.key_pem = self.cloud.admin.get("/system/catalogue-key").text.encode()
        self.objectives = objectives or {}
        self.edge_port = free_port()
        self.edge = self.start_edge(self.cloud.url)
        license = self.edge.admin.post("/system/licenses", json={"name": "plant", "plan": "standard"}).json()
        self.license, self.token = license["id"], license["token"]

    def start_cloud(self) -> LiveGateway:
        settings = SiteSettings(name="cloud", role="cloud", known_sites=self.credentials)
        return LiveGateway(self.root / "cloud", PASSWORD, port=self.cloud_port, sites=settings)

    def start_edge(self, cloud_url: str) -> LiveGateway:
        settings = SiteSettings(
            name="edge-a",
            role="edge",
            cloud_url=cloud_url,
            cloud_site="cloud",
            credential=self.credentials["edge-a"],
            catalogue_key_pem=self.key_pem,
            objectives=self.objectives,
            poll_s=0.1,
        )
        return LiveGateway(self.root / "edge", PASSWORD, port=self.edge_port, sites=settings)

    def publish(
        self, name: str, sites: str | None, revision: int = 1, method: str = "POST"
    ) -> httpx.Response:
        body: dict[str, Any] = {"service": name, "code": code(revision)}
        if sites is not None:
            body["annotations"] = {"edgefaas.io/sites": sites}
        return self.cloud.admin.request(method, "/system/functions", json=body)

    def call(self, name: str, payload: dict | None = None, key: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        if key:
            headers["X-Call-Id"] = key
        with httpx.Client(base_url=self.edge.url, timeout=60, trust_env=False) as client:
            return client.post(f"/function/{name}", json=payload or {}, headers=headers)

    def at_edge(self, name: str, revision: int | None = None) -> bool:
        answer = self.call(name)
        if answer.status_code != 200 or answer.headers.get("X-EdgeFaaS-Site") != "edge-a":
            return False  # not deployed here yet: the cloud answered
        return revision is None or answer.json()["revision"] == revision

    def edge_bill(self) -> dict[str, Any]:
        return self.edge.admin.get("/system/billing", params={"license": self.license}).json()

    def cloud_rows(self, sql: str, *params: Any) -> list[tuple]:
        with sqlite3.connect(self.root / "cloud" / "gateway.db") as db:
            return db.execute(sql, params).fetchall()

    def close(self) -> None:
        self.edge.stop()
        self.cloud.stop()


@pytest.fixture
def sites(tmp_path):
    pair = Sites(tmp_path, objectives={"Slow": Objective(max_inflight=2)})
    yield pair
    pair.close()


def _calls(bill: dict[str, Any]) -> int:
    return sum(f["invocations"] for f in bill["functions"])


def test_a_function_published_in_the_cloud_reaches_the_edge_verified_and_runs_there(sites):
    published = time.monotonic()
    answer = sites.publish("Near", "edge-a")
    assert answer.status_code == 202, answer.text
    eventually(lambda: sites.at_edge("Near"), "Near answering at the edge")
    print(f"publish in the cloud -> answering at the edge: {time.monotonic() - published:.2f} s")
    ran_in_cloud = sites.cloud_rows("SELECT COUNT(*) FROM ledger WHERE license_id = 'site:edge-a'")
    called = sites.call("Near")
    assert called.headers["X-EdgeFaaS-Site"] == "edge-a"
    assert called.headers["X-EdgeFaaS-Offload-Reason"] == "local"
    status = sites.edge.admin.get("/system/sites").json()
    assert status["role"] == "edge" and status["catalogue"]["deployed"]["Near"] >= 1
    assert status["catalogue"]["refused"] == []
    # It ran at the edge: the cloud ran nothing more for it (before it arrived, calls went there).
    assert sites.cloud_rows("SELECT COUNT(*) FROM ledger WHERE license_id = 'site:edge-a'") == ran_in_cloud

    # An update reaches the edge as a new version; a placement without the edge withdraws it.
    assert sites.publish("Near", "edge-a", revision=2, method="PUT").status_code == 200
    eventually(lambda: sites.at_edge("Near", revision=2), "revision 2 at the edge")
    assert sites.publish("Near", "edge-b", revision=2, method="PUT").status_code == 200
    eventually(lambda: "Near" not in sites.edge.functions(), "Near withdrawn from the edge")
    # Called at the edge now, it runs in the cloud (where it is still deployed).
    offloaded = sites.call("Near")
    assert offloaded.status_code == 200, offloaded.text
    assert offloaded.headers["X-EdgeFaaS-Site"] == "cloud"
    assert offloaded.headers["X-EdgeFaaS-Offload-Reason"] == "not_deployed"


def test_a_placement_naming_an_unknown_site_is_refused_naming_it_and_nothing_is_deployed(sites):
    answer = sites.publish("Stray", "edge-a, edge-z")
    assert answer.status_code == 400
    assert "'edge-z'" in answer.json()["error"] and "edgefaas.io/sites" in answer.json()["error"]
    assert sites.cloud.admin.get("/system/function/Stray").status_code == 404
    assert sites.cloud_rows("SELECT COUNT(*) FROM catalogue") == [(0,)]
    # The edge is no cloud: it publishes to no site.
    refused = sites.edge.admin.post(
        "/system/functions",
        json={"service": "Mine", "code": code(), "annotations": {"edgefaas.io/sites": "edge-a"}},
    )
    assert refused.status_code == 400 and "only a cloud gateway" in refused.json()["error"]


def _tamper(sites: Sites, name: str, change: Callable[[dict, dict], None], bump: bool) -> None:
    """What an attacker holding the cloud's database (not its key) can do: rewrite an entry, and
    give it a new version (``bump``) so that edges which have the current one fetch it too."""
    from edgefaas.gateway.catalogue import b64, canonical, unb64

    with sqlite3.connect(sites.root / "cloud" / "gateway.db") as db:
        spec, payload, version = db.execute(
            "SELECT spec, payload, version FROM catalogue WHERE function = ?", (name,)
        ).fetchone()
        spec_json, payload_json = json.loads(spec), json.loads(unb64(payload))
        (latest,) = db.execute("SELECT MAX(version) FROM catalogue").fetchone()
        change(spec_json, payload_json)
        if bump:
            version = payload_json["version"] = latest + 1
        db.execute(
            "UPDATE catalogue SET spec = ?, payload = ?, version = ? WHERE function = ?",
            (json.dumps(spec_json), b64(canonical(payload_json)), version, name),
        )


def _refusals(sites: Sites) -> list[dict[str, Any]]:
    return sites.edge.admin.get("/system/sites").json()["catalogue"]["refused"]


def test_a_tampered_entry_is_refused_with_its_reason_and_the_verified_function_keeps_serving(sites):
    assert sites.publish("Good", "edge-a").status_code == 202
    eventually(lambda: sites.at_edge("Good", revision=1), "Good at the edge")

    # Revision 2 published while the edge is away, and its code swapped in the cloud's database
    # before the edge fetches it: the signed digest no longer matches.
    sites.edge.stop()
    assert sites.publish("Good", "edge-a", revision=2, method="PUT").status_code == 200

    def swap_code(spec: dict, payload: dict) -> None:
        spec["code"] = code(666)

    _tamper(sites, "Good", swap_code, bump=False)
    sites.edge = sites.start_edge(sites.cloud.url)
    refused = eventually(lambda: _refusals(sites), "the edge refusing the swapped code")
    assert (refused[0]["function"], refused[0]["reason"]) == ("Good", "tampered"), refused
    assert "code does not match its signed digest" in refused[0]["error"]
    assert sites.call("Good").json()["revision"] == 1, "the verified revision must keep serving"

    # Digests made to match the swapped code: now the signature does not verify.
    def swap_and_digest(spec: dict, payload: dict) -> None:
        spec["code"] = code(667)
        payload["code_sha256"] = sha256(spec["code"].encode())
        payload["spec_sha256"] = sha256(canonical(spec))

    _tamper(sites, "Good", swap_and_digest, bump=True)
    eventually(
        lambda: any(r["reason"] == "bad_signature" for r in _refusals(sites)), "a re-digested entry refused"
    )
    assert sites.call("Good").json()["revision"] == 1
    metrics = sites.edge.admin.get("/metrics").text
    assert 'edgefaas_catalogue_refused_total{reason="bad_signature"} 1' in metrics
    assert 'edgefaas_catalogue_refused_total{reason="tampered"} 1' in metrics

    # A genuine publish afterwards is taken.
    assert sites.publish("Good", "edge-a", revision=3, method="PUT").status_code == 200
    eventually(lambda: sites.at_edge("Good", revision=3), "the genuine revision 3 at the edge")


def test_a_cloud_only_function_called_at_the_edge_runs_in_the_cloud_and_is_billed_once(sites):
    assert sites.publish("Far", None).status_code == 202  # deployed in the cloud, placed nowhere else
    first = sites.call("Far", key="order-1")
    assert first.status_code == 200, first.text
    assert first.headers["X-EdgeFaaS-Site"] == "cloud"
    assert first.headers["X-EdgeFaaS-Offload-Reason"] == "not_deployed"
    assert first.json()["function"] == "Far"
    again = sites.call("Far", key="order-1")
    assert again.status_code == 200 and again.headers.get("X-Idempotent-Replay") == "true"
    assert again.json() == first.json()
    other = sites.call("Far", key="order-2")
    assert other.status_code == 200

    bill = sites.edge_bill()
    assert _calls(bill) == 2 and bill["total"] > 0, bill
    # The cloud ran each once for the edge, priced nothing: billed where the caller entered.
    assert sites.cloud_rows(
        "SELECT COUNT(*), SUM(amount_micros) FROM ledger WHERE license_id = 'site:edge-a'"
    ) == [(2, 0)]
    assert sites.cloud_rows("SELECT COUNT(*) FROM ledger WHERE license_id NOT LIKE 'site:%'") == [(0,)]
    metrics = sites.edge.admin.get("/metrics").text
    assert 'edgefaas_site_calls_total{function_name="Far",site="cloud",reason="not_deployed"} 2' in metrics

    # Without a license the edge sends nothing on; a name the cloud lacks too is 404, not billed.
    with httpx.Client(base_url=sites.edge.url, timeout=30, trust_env=False) as client:
        assert client.post("/function/Far", json={}).status_code == 401
    nowhere = sites.call("Nowhere")
    assert nowhere.status_code == 404 and "cloud" in nowhere.json()["error"]
    assert _calls(sites.edge_bill()) == 2


class _Callbacks:
    """Receives async calls' callbacks on loopback: (headers, body) by call id."""

    def __init__(self) -> None:
        self.received: dict[str, tuple[dict[str, str], bytes]] = {}
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received[self.headers.get("X-Call-Id", "")] = (dict(self.headers), body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/done"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_an_async_call_of_a_cloud_only_function_is_queued_at_the_edge_and_runs_in_the_cloud(sites):
    assert sites.publish("Far", None).status_code == 202
    callbacks = _Callbacks()
    try:
        headers = {"Authorization": f"Bearer {sites.token}", "X-Callback-Url": callbacks.url}
        with httpx.Client(base_url=sites.edge.url, timeout=30, trust_env=False) as client:
            queued = client.post("/async-function/Far", json={}, headers=headers)
            assert queued.status_code == 202, queued.text
            call_id = queued.headers["X-Call-Id"]
            # Without a license nothing is queued: the edge pays the cloud's work.
            assert client.post("/async-function/Far", json={}).status_code == 401
        got, body = eventually(lambda: callbacks.received.get(call_id), "the callback of the queued call")
    finally:
        callbacks.close()
    assert got["X-Function-Status"] == "200" and json.loads(body)["function"] == "Far"
    assert _calls(sites.edge_bill()) == 1  # billed once, at the edge it entered
    ran = sites.cloud_rows("SELECT COUNT(*) FROM ledger WHERE license_id = 'site:edge-a'")
    assert ran == [(1,)]
    metrics = sites.edge.admin.get("/metrics").text
    assert 'edgefaas_site_calls_total{function_name="Far",site="cloud",reason="not_deployed"} 1' in metrics


def test_past_the_objective_part_of_the_calls_run_in_the_cloud(sites):
    assert sites.publish("Slow", "edge-a").status_code == 202
    eventually(lambda: sites.at_edge("Slow"), "Slow at the edge")
    before = _calls(sites.edge_bill())
    ran_in_cloud = sites.cloud_rows("SELECT COUNT(*) FROM ledger WHERE license_id = 'site:edge-a'")[0][0]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: sites.call("Slow", {"sleep": 0.6}), range(8)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    where = [(a.headers["X-EdgeFaaS-Site"], a.headers["X-EdgeFaaS-Offload-Reason"]) for a in answers]
    local = where.count(("edge-a", "local"))
    offloaded = where.count(("cloud", "queue_depth"))
    assert local + offloaded == 8, where
    assert 1 <= local <= 8 - 1 and offloaded >= 1, where
    assert _calls(sites.edge_bill()) == before + 8  # every call billed once, at the edge
    in_cloud = sites.cloud_rows("SELECT COUNT(*) FROM ledger WHERE license_id = 'site:edge-a'")[0][0]
    assert in_cloud - ran_in_cloud == offloaded


def _impostor(headers: Callable[[Request], dict[str, str]]) -> tuple[str, uvicorn.Server]:
    """Something at the cloud's address that answers calls as the cloud would not."""

    async def answer(request: Request) -> JSONResponse:
        return JSONResponse({"function": "Other"}, headers=headers(request))

    app = Starlette(routes=[Route("/{rest:path}", answer, methods=["GET", "POST"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    eventually(lambda: server.started, "the impostor started", 10)
    return f"http://127.0.0.1:{port}", server


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        (lambda r: {"X-Call-Id": r.headers.get("x-call-id", ""), "X-EdgeFaaS-Reached": "true",
                    "X-EdgeFaaS-Function": "Far"}, "not from the cloud"),
        (lambda r: {"X-EdgeFaaS-Site": "cloud", "X-Call-Id": r.headers.get("x-call-id", ""),
                    "X-EdgeFaaS-Reached": "true", "X-EdgeFaaS-Function": "Other"}, "for function 'Other'"),
        (lambda r: {"X-EdgeFaaS-Site": "cloud", "X-Call-Id": "someone-else", "X-EdgeFaaS-Reached": "true",
                    "X-EdgeFaaS-Function": "Far"}, "another call"),
    ],
    ids=["no-site", "other-function", "other-call"],
)  # fmt: skip
def test_an_answer_that_is_not_the_cloud_s_for_the_call_is_502_and_not_billed(tmp_path, headers, said):
    pair = Sites(tmp_path)
    url, impostor = _impostor(headers)
    pair.edge.stop()
    pair.edge = pair.start_edge(url)
    try:
        answer = pair.call("Far")
        assert answer.status_code == 502 and said in answer.json()["error"], answer.text
        assert _calls(pair.edge_bill()) == 0
    finally:
        impostor.should_exit = True
        pair.close()


def test_with_the_cloud_stopped_the_edge_serves_on_and_the_roll_up_is_exact_after(sites):
    assert sites.publish("Near", "edge-a").status_code == 202
    assert sites.publish("Far", None).status_code == 202
    eventually(lambda: sites.at_edge("Near"), "Near at the edge")
    for _ in range(5):
        assert sites.call("Near").status_code == 200
        assert sites.call("Far").status_code == 200
    eventually(lambda: sites.edge.admin.get("/system/sites").json()["usage"]["acked"] >= 10, "usage pushed")

    sites.cloud.stop()
    for _ in range(7):
        near = sites.call("Near")
        assert near.status_code == 200 and near.headers["X-EdgeFaaS-Site"] == "edge-a"
    far = sites.call("Far")
    assert far.status_code == 503 and "unreachable" in far.json()["error"]  # not billed
    status = sites.edge.admin.get("/system/sites").json()
    assert status["catalogue"]["cloud_reachable"] is False and status["catalogue"]["last_error"]

    sites.cloud = sites.start_cloud()  # the partition heals: same address, same database
    bill = sites.edge_bill()

    def rolled_up() -> dict[str, Any] | None:
        found = sites.cloud.admin.get("/system/site-usage", params={"license": sites.license}).json()
        entry = next((e for e in found["licenses"] if e["license"] == sites.license), None)
        return entry if entry and entry["sites"].get("edge-a", {}).get("calls") == _calls(bill) else None

    entry = eventually(rolled_up, "the roll-up catching up")
    assert _calls(bill) >= 5 + 5 + 7
    edge_total_micros = round(bill["total"] * 1_000_000)
    assert entry["sites"]["edge-a"]["amount_micros"] == edge_total_micros
    assert set(entry["sites"]) == {"edge-a"}, "the cloud billed none of the edge's calls itself"

    # Pushed again from the start (an acknowledgement lost), nothing is counted twice.
    with sqlite3.connect(sites.root / "edge" / "gateway.db") as db:
        db.execute("UPDATE site_state SET value = '0' WHERE key = 'usage_acked'")
    eventually(
        lambda: sites.edge.admin.get("/system/sites").json()["usage"]["acked"] == _calls(bill), "pushed again"
    )
    again = rolled_up()
    assert again is not None and again["sites"]["edge-a"] == entry["sites"]["edge-a"]


def test_a_publish_while_the_edge_is_away_reaches_it_when_it_returns(sites):
    sites.edge.stop()
    assert sites.publish("Later", "edge-a").status_code == 202
    sites.edge = sites.start_edge(sites.cloud.url)
    eventually(lambda: sites.at_edge("Later"), "Later at the returned edge")
    assert sites.call("Later").headers["X-EdgeFaaS-Site"] == "edge-a"


def test_site_routes_need_a_site_s_credential_and_a_cloud(sites):
    with httpx.Client(base_url=sites.cloud.url, timeout=10, trust_env=False) as client:
        assert client.get("/sites/catalogue").status_code == 401
        wrong = client.get("/sites/catalogue", headers={"Authorization": "EdgeFaaS-Site edge-a:nope"})
        assert wrong.status_code == 403
        unknown = client.get("/sites/catalogue", headers={"Authorization": "EdgeFaaS-Site edge-q:nope"})
        assert unknown.status_code == 403 and "'edge-q'" in unknown.json()["error"]
        forwarded = client.post("/site-function/Far/", headers={"Authorization": "EdgeFaaS-Site edge-a:nope"})
        assert forwarded.status_code == 403 and forwarded.headers["X-EdgeFaaS-Reached"] == "false"
    with httpx.Client(base_url=sites.edge.url, timeout=10, trust_env=False) as client:
        site = {"Authorization": f"EdgeFaaS-Site edge-a:{sites.credentials['edge-a']}"}
        assert client.get("/sites/catalogue", headers=site).status_code == 404  # an edge has no catalogue


def test_usage_records_pushed_twice_count_once_and_a_reused_number_is_refused(sites):
    site = {"Authorization": f"EdgeFaaS-Site edge-b:{sites.credentials['edge-b']}"}
    record = {"seq": 1, "call_id": "c1", "license_id": "lic_0123456789abcdef", "function": "F",
              "started_at": time.time(), "duration_us": 1000, "status": 200,
              "amount_micros": 120}  # fmt: skip
    second = {**record, "seq": 2, "call_id": "c2"}
    with httpx.Client(base_url=sites.cloud.url, timeout=10, trust_env=False) as client:
        assert (
            client.post("/sites/usage", json={"records": [record, second]}, headers=site).json()["acked"] == 2
        )
        assert (
            client.post("/sites/usage", json={"records": [record, second]}, headers=site).json()["acked"] == 2
        )
        reused = client.post("/sites/usage", json={"records": [{**record, "call_id": "c9"}]}, headers=site)
        assert reused.status_code == 409 and "numbering" in reused.json()["error"]
        gap = client.post(
            "/sites/usage", json={"records": [{**record, "seq": 4, "call_id": "c4"}]}, headers=site
        )
        assert gap.json()["acked"] == 2  # held, but not counted as contiguous until 3 arrives
        bad = client.post("/sites/usage", json={"records": [{**record, "seq": 0}]}, headers=site)
        assert bad.status_code == 400 and "seq" in bad.json()["error"]
    rollup = sites.cloud.admin.get("/system/site-usage", params={"license": record["license_id"]}).json()
    assert rollup["licenses"][0]["sites"]["edge-b"] == {"calls": 3, "duration_us": 3000, "amount_micros": 360}


def _tls_files(root: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for 127.0.0.1: (CA file, certificate, key)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test sites CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(1).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloud")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    paths = root / "ca.pem", root / "tls.crt", root / "tls.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def test_an_https_cloud_is_verified_by_the_ca_file_and_never_trusted_without_it(tmp_path):
    ca, cert, key = _tls_files(tmp_path / "tls")
    credential = secrets.token_urlsafe(24)
    cloud_settings = SiteSettings(name="cloud", role="cloud", known_sites={"edge-a": credential})
    cloud = LiveGateway(tmp_path / "cloud", PASSWORD, tls=(cert, key), ca=ca, sites=cloud_settings)
    edges = []
    try:
        key_pem = cloud.admin.get("/system/catalogue-key").text.encode()
        published = cloud.admin.post(
            "/system/functions",
            json={"service": "Near", "code": code(), "annotations": {"edgefaas.io/sites": "edge-a"}},
        )
        assert published.status_code == 202, published.text
        for name, ca_file in (("trusting", ca), ("stranger", cert)):  # cert: a file that is no CA of it
            settings = SiteSettings(name="edge-a", role="edge", cloud_url=cloud.url, credential=credential,
                                    catalogue_key_pem=key_pem, ca_file=ca_file, poll_s=0.1)  # fmt: skip
            edges.append(LiveGateway(tmp_path / name, PASSWORD, sites=settings))
        trusting, stranger = edges
        eventually(lambda: "Near" in trusting.functions(), "Near at the edge that trusts the CA")
        error = eventually(
            lambda: stranger.admin.get("/system/sites").json()["catalogue"]["last_error"],
            "the stranger failing",
        )
        assert "cannot reach the cloud" in error and "Near" not in stranger.functions()
    finally:
        for edge in edges:
            edge.stop()
        cloud.stop()


def test_the_site_options_reach_the_settings_and_a_half_configured_edge_is_refused(monkeypatch, tmp_path):
    import uvicorn
    from click.testing import CliRunner

    from edgefaas.gateway import app, cli

    seen = []
    monkeypatch.setattr(cli, "make_backend", lambda *args, **kwargs: object())
    monkeypatch.setattr(app, "create_app", lambda settings, backend: seen.append(settings))
    monkeypatch.setattr(cli, "listening_socket", lambda host, port: None)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    (tmp_path / "credential").write_text("c" * 24 + "\n")
    (tmp_path / "objectives.json").write_text(json.dumps({"Slow": {"max_inflight": 3}}))
    ca_file = _tls_files(tmp_path / "tls")[0]
    ca_key = tmp_path / "catalogue.pem"
    from edgefaas.gateway.licensing.es256_key import LocalEs256Signer, public_pem

    ca_key.write_text(public_pem(LocalEs256Signer(tmp_path / "cloud-key.pem").public_key))
    args = ["--backend", "local", "--data-dir", str(tmp_path / "data"), "--admin-password", "pw"]
    env = {"EDGEFAAS_SITE_NAME": "edge-a", "EDGEFAAS_SITE_ROLE": "edge"}
    edge = [
        "--cloud-url", "https://10.0.0.9:8080/", "--site-credential-file", str(tmp_path / "credential"),
        "--catalogue-key", str(ca_key), "--objectives-file", str(tmp_path / "objectives.json"),
        "--cloud-ca-file", str(ca_file),
    ]  # fmt: skip
    result = CliRunner().invoke(cli.gateway, [*args, *edge], env=env)
    assert result.exit_code == 0, result.output
    (settings,) = seen
    site = settings.sites
    assert (site.name, site.role, site.cloud_url, site.credential) == (
        "edge-a",
        "edge",
        "https://10.0.0.9:8080",
        "c" * 24,
    )
    assert site.objectives["Slow"].max_inflight == 3 and site.ca_file == ca_file
    half = CliRunner().invoke(cli.gateway, [*args, "--cloud-url", "http://10.0.0.9:8080"], env=env)
    assert half.exit_code == 2 and "credential" in half.output and "catalogue key" in half.output
    bad_sites = tmp_path / "sites.json"
    bad_sites.write_text(json.dumps({"sites": {"Edge_A": "x" * 20}}))
    cloud = CliRunner().invoke(
        cli.gateway,
        [*args, "--site-name", "cloud", "--site-role", "cloud", "--sites-file", str(bad_sites)],
        env={},
    )
    assert cloud.exit_code == 2 and "'Edge_A'" in cloud.output


def test_catalogue_entries_signed_by_a_parsec_held_key_verify_with_its_exported_public_key(tmp_path):
    from edgefaas.gateway.catalogue import PARSEC_KEY, CatalogueStore, Refused, verify
    from edgefaas.gateway.database import SqliteDatabase
    from edgefaas.gateway.licensing.tokens import Es256Verifier, ParsecSigner
    from edgefaas.gateway.migrations import migrate

    from .parsec_fakes import FakeParsec

    parsec = FakeParsec()
    db = SqliteDatabase(tmp_path / "cloud.db")
    migrate(db)
    store = CatalogueStore(db, ParsecSigner(parsec, key_name=PARSEC_KEY), "cloud")
    assert PARSEC_KEY in {key.name for key in parsec.list_keys()}  # the key is Parsec's, apart from licenses'
    spec = {"service": "Near", "code": code(), "annotations": {"edgefaas.io/sites": "edge-a"}}
    version = store.publish("Near", ["edge-a"], spec)
    _, (entry,) = store.feed("edge-a", 0)
    verifier = Es256Verifier(parsec.export_public_key(PARSEC_KEY, "der"))
    checked = verify(entry, verifier, "cloud")
    assert (checked.version, checked.sites, checked.spec) == (version, ("edge-a",), spec)
    assert store.feed("edge-b", 0) == (version, [])  # nothing for a site it is not placed at
    with pytest.raises(Refused) as refused:
        verify(entry, verifier, "another-cloud")
    assert refused.value.reason == "mismatch"
    db.close()


class _Blackhole:
    """A cloud behind a WAN cut that drops packets: connections are taken, nothing is answered."""

    def __init__(self) -> None:
        import socket

        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: list[Any] = []
        threading.Thread(target=self._take, daemon=True).start()

    def _take(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


def test_a_silent_wan_cut_is_known_within_a_round_and_offloads_fail_fast(tmp_path, monkeypatch):
    """Found on the lab: a cut that drops packets held each offload on a kept-alive connection
    for the call's whole timeout (60 s), and the edge learnt of the cut no sooner."""
    from edgefaas.gateway import catalogue_follower

    monkeypatch.setattr(catalogue_follower, "ROUND_TIMEOUT_S", 0.5)
    pair = Sites(tmp_path)
    cut = _Blackhole()
    pair.edge.stop()
    pair.edge = pair.start_edge(cut.url)
    try:
        eventually(
            lambda: pair.edge.admin.get("/system/sites").json()["catalogue"]["cloud_reachable"] is False,
            "the edge knowing the cloud is away",
            timeout=5,
        )
        started = time.monotonic()
        answer = pair.call("Far")
        assert time.monotonic() - started < 2, "the offload waited on the silent cloud"
        assert answer.status_code == 503 and "unreachable" in answer.json()["error"], answer.text
        assert _calls(pair.edge_bill()) == 0
    finally:
        cut.close()
        pair.close()
