"""The web console's routes: the page and its files, the perf report it shows, a function's source.

In-process over ASGI with the gateway test harness (fake backend, fake functions). What the
page does in a browser is tests/integration/test_console.py's (headless Chromium on a lab).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from edgefaas.deploy.inventory import HostData, InventoryHost
from edgefaas.gateway.console import ASSETS, STATIC
from edgefaas.gateway.routes.perf_report import PERF_REPORT_MAX_BYTES
from edgefaas.perf import publish
from edgefaas.perf.site_gateway import GatewayAccessError, gateway_target

from .test_gateway_fakes import ADMIN, CODE, Harness, harness_fixture  # noqa: F401 - the harness fixture

pytestmark = pytest.mark.unit

REPORT = "<!DOCTYPE html>\n<html><head><title>perf</title></head><body><h1>figures {n}</h1></body></html>\n"
# Where a page or module names another file: attributes, CSS url(), static and dynamic imports.
REFERENCE = re.compile(r"""(?:src|href)="([^"]+)"|url\(([^)]+)\)|from\s+"([^"]+)"|import\("([^"]+)"\)""")


def references(text: str) -> list[str]:
    return [next(g for g in match.groups() if g) for match in REFERENCE.finditer(text)]


def test_the_page_is_html_with_no_address_outside_the_gateway(harness):
    answer = harness.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert '<script type="module"' in answer.text
    for name in ASSETS:
        text = harness.get(f"/console/static/{name}").text
        # Not only asset references: no absolute URL at all, so nothing can reach past the gateway.
        assert "http://" not in text and "https://" not in text, name
        assert "//" not in "".join(r for r in references(text) if r.startswith("//")), name


def test_the_page_may_load_and_call_only_its_own_gateway(harness):
    policy = dict(
        part.strip().split(" ", 1) for part in harness.get("/").headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    for directive in ("script-src", "connect-src"):
        assert policy[directive] == "'self'", directive
    # Styles: its own files, and inline ones for the perf report's frame; never another host.
    assert policy["style-src"].split() == ["'self'", "'unsafe-inline'"]


def test_every_file_the_page_and_its_modules_name_is_served_with_its_type(harness):
    expected = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
    seen: set[str] = set()
    todo = ["/"]
    while todo:
        url = todo.pop()
        answer = harness.get(url)
        assert answer.status_code == 200, url
        suffix = Path(url).suffix or ".html"
        assert answer.headers["content-type"].split(";")[0] == expected[suffix], url
        for ref in references(answer.text):
            if ref.startswith("data:") or ref.startswith("#"):
                continue
            target = ref if ref.startswith("/") else "/console/static/" + ref.removeprefix("./")
            if target not in seen:
                seen.add(target)
                todo.append(target)
    served = {f"/console/static/{name}" for name in ASSETS if name != "index.html"}
    # Every shipped module is reachable from the page (nothing dead), and nothing named is missing.
    assert seen == served


def test_the_shipped_files_are_exactly_those_in_the_package(harness):
    on_disk = {p.name for p in STATIC.iterdir() if p.suffix in {".js", ".css", ".html"}}
    assert set(ASSETS) == on_disk
    for name in on_disk:
        assert harness.get(f"/console/static/{name}").content == (STATIC / name).read_bytes()


@pytest.mark.parametrize("name", ["nothere.js", "..%2F__init__.py", "%2E%2E%2Fadmin.py", "__init__.py"])
def test_a_file_outside_the_console_is_not_found(harness, name):
    answer = harness.get(f"/console/static/{name}")
    assert answer.status_code == 404
    assert "error" in answer.json()


def test_an_unchanged_file_revalidates_to_304(harness):
    first = harness.get("/console/static/app.js")
    etag = first.headers["etag"]
    again = harness.get("/console/static/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.content
    other = harness.get("/console/static/app.js", headers={"If-None-Match": '"stale"'})
    assert other.status_code == 200 and other.content == first.content


def test_the_page_needs_no_login_but_every_api_it_reads_does(harness):
    assert harness.get("/").status_code == 200
    for path in ("/system/nodes", "/system/functions", "/system/apis", "/console/perf-report"):
        assert harness.get(path).status_code == 401, path


# -- the perf report ------------------------------------------------------------------------------


def put_report(harness, body, content_type="text/html; charset=utf-8", auth=ADMIN) -> httpx.Response:
    data = body.encode() if isinstance(body, str) else body
    return harness.put("/system/perf-report", content=data, headers={"Content-Type": content_type}, auth=auth)


def test_no_report_yet_is_a_404_that_says_how_to_make_one(harness):
    answer = harness.get("/console/perf-report", auth=ADMIN)
    assert answer.status_code == 404
    assert "edgefaas perf" in answer.json()["error"]


def test_a_stored_report_is_served_sandboxed_and_replaced_by_the_next(harness):
    first = put_report(harness, REPORT.format(n=1))
    assert first.status_code == 201, first.text
    assert first.json()["bytes"] == len(REPORT.format(n=1).encode())
    shown = harness.get("/console/perf-report", auth=ADMIN)
    assert shown.status_code == 200 and shown.text == REPORT.format(n=1)
    assert shown.headers["content-type"].startswith("text/html")
    assert "sandbox" in shown.headers["content-security-policy"]
    assert put_report(harness, REPORT.format(n=2)).status_code == 201
    assert harness.get("/console/perf-report", auth=ADMIN).text == REPORT.format(n=2)


@pytest.mark.parametrize("auth", [None, ("admin", "wrong"), ("someone", ADMIN[1])])
def test_the_report_needs_the_admin_both_ways(harness, auth):
    assert put_report(harness, REPORT.format(n=1), auth=auth).status_code == 401
    assert put_report(harness, REPORT.format(n=2)).status_code == 201
    assert harness.get("/console/perf-report", auth=auth).status_code == 401
    assert harness.get("/console/perf-report", auth=ADMIN).text == REPORT.format(n=2)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (REPORT, "application/json", 415),
        (REPORT, "text/plain", 415),
        ("just words", "text/html", 400),
        ("", "text/html", 400),
        (b"<html>\xff\xfe</html>", "text/html", 400),
    ],
    ids=["json-type", "plain-type", "not-html", "empty", "not-utf8"],
)
def test_what_is_not_an_html_report_is_refused_and_keeps_the_stored_one(harness, body, content_type, status):
    assert put_report(harness, REPORT.format(n=1)).status_code == 201
    answer = put_report(harness, body, content_type)
    assert answer.status_code == status, answer.text
    assert harness.get("/console/perf-report", auth=ADMIN).text == REPORT.format(n=1)


def test_a_report_over_the_limit_is_a_413_and_nothing_is_stored(harness):
    padding = "x" * (PERF_REPORT_MAX_BYTES + 1 - len(REPORT.format(n="")))
    just_over = REPORT.format(n=padding)
    assert len(just_over.encode()) > PERF_REPORT_MAX_BYTES
    assert put_report(harness, just_over).status_code == 413
    assert harness.get("/console/perf-report", auth=ADMIN).status_code == 404
    at_limit = REPORT.format(n="x" * (PERF_REPORT_MAX_BYTES - len(REPORT.format(n=""))))
    assert len(at_limit.encode()) == PERF_REPORT_MAX_BYTES
    assert put_report(harness, at_limit).status_code == 201


def test_the_gateway_body_limit_also_bounds_the_report(tmp_path):
    harness = Harness(tmp_path, max_body_bytes=1024)
    try:
        assert put_report(harness, REPORT.format(n="y" * 2000)).status_code == 413
        assert put_report(harness, REPORT.format(n="y" * 100)).status_code == 201
    finally:
        harness.close()


# -- a function's source --------------------------------------------------------------------------


def test_a_function_source_is_what_was_deployed(harness):
    harness.deploy("Echo")
    answer = harness.get("/system/function/Echo/code", auth=ADMIN)
    assert answer.status_code == 200 and answer.text == CODE
    assert harness.get("/system/function/Echo/code").status_code == 401
    assert harness.get("/system/function/Nobody/code", auth=ADMIN).status_code == 404


def test_a_function_from_an_image_has_no_source_to_show(harness):
    answer = harness.post("/system/functions", json={"service": "Imaged", "image": "repo/fn:1"}, auth=ADMIN)
    assert answer.status_code == 202, answer.text
    missing = harness.get("/system/function/Imaged/code", auth=ADMIN)
    assert missing.status_code == 404 and "image" in missing.json()["error"]


# -- `edgefaas perf` publishing the report ---------------------------------------------------------


def test_the_report_goes_to_the_inventory_gateway(harness, tmp_path):
    report = tmp_path / "report.html"
    report.write_text(REPORT.format(n=7))
    hosts = [
        InventoryHost("jetson-1", ("jetson", "k3s_agent"), HostData({"ssh_hostname": "10.0.0.3"})),
        InventoryHost(
            "sonic-1",
            ("sonic", "k3s_server"),
            HostData({"ssh_hostname": "10.0.0.1", "edgefaas_gateway_port": 9090}),
        ),
    ]
    target = gateway_target(hosts)
    assert target.url == "https://10.0.0.1:9090" and target.host == "sonic-1"
    assert publish.admin_password(target, {"EDGEFAAS_ADMIN_PASSWORD": ADMIN[1]}) == ADMIN[1]
    transport = _SyncOverHarness(harness)
    where = publish.upload(report, "http://gateway", ADMIN[1], transport=transport)
    assert where.endswith("/#/performance")
    assert harness.get("/console/perf-report", auth=ADMIN).text == REPORT.format(n=7)
    with pytest.raises(publish.PublishError, match="401"):
        publish.upload(report, "http://gateway", "wrong", transport=transport)


def test_publishing_never_fails_the_run(tmp_path, monkeypatch):
    report = tmp_path / "report.html"
    report.write_text(REPORT.format(n=1))
    lines: list[str] = []
    monkeypatch.setenv("EDGEFAAS_ADMIN_PASSWORD", "pw")
    # An inventory that does not load: the reason is printed, nothing is raised.
    assert publish.publish(report, str(tmp_path / "missing.py"), log=lines.append) is False
    assert lines and "not published" in lines[-1]
    with pytest.raises(GatewayAccessError, match="k3s_server"):
        gateway_target([InventoryHost("jetson-1", ("jetson",), HostData({}))])
    with pytest.raises(publish.PublishError, match="did not take"):
        publish.upload(report, "http://127.0.0.1:9", "pw")


class _SyncOverHarness(httpx.BaseTransport):
    """httpx's sync client over the harness's app (which runs on the harness's own loop)."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.harness.request(
            request.method, request.url.raw_path.decode(), content=request.read(), headers=request.headers
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)
