"""Licenses, tokens, quotas and billing: who may call, who pays, and how much."""

import asyncio
import base64
import csv
import hashlib
import hmac
import io
import json
import string

import jwt
import pytest

from edgefaas.gateway.licensing.plans import Plan
from edgefaas.gateway.licensing.tokens import HmacSigner, InvalidToken, make_token, read_token

from .test_gateway_fakes import ADMIN, harness_fixture  # noqa: F401 - the harness fixture

pytestmark = pytest.mark.unit


def _part(token, index):
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _claims(token):
    return _part(token, 1)


def _json_b64(value):
    return _b64(json.dumps(value, separators=(",", ":"), sort_keys=True).encode())


def _hmac_key(harness):
    return bytes.fromhex(harness.gateway.settings.license_key_file.read_text().strip())


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_license_comes_with_a_signed_token_shown_once(harness):
    license_id, token = harness.license("standard", name="acme")
    header = _part(token, 0)
    assert header == {"alg": "HS256", "kid": harness.gateway.licenses.signer.key_id, "typ": "JWT"}
    claims = _claims(token)
    assert claims["sub"] == license_id and set(claims) == {"sub", "iat"}
    listed = harness.get("/system/licenses", auth=ADMIN).json()
    assert [(lic["id"], lic["name"], lic["plan"], lic["revoked"]) for lic in listed] == [
        (license_id, "acme", "standard", False)
    ]
    assert "token" not in listed[0]


def test_an_unknown_plan_is_refused(harness):
    answer = harness.post("/system/licenses", json={"name": "x", "plan": "gold"}, auth=ADMIN)
    assert answer.status_code == 404 and "no plan named 'gold'" in answer.json()["error"]


def test_a_private_function_needs_a_good_token(harness):
    harness.deploy("Echo")
    license_id, token = harness.license()
    missing = harness.call("Echo")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert harness.call("Echo", headers={"Authorization": "Basic YWRtaW46eA=="}).status_code == 401
    assert harness.call("Echo", token="not-a-token").status_code == 403
    assert harness.call("Echo", token="efl1.%%%.%%%").status_code == 403
    assert harness.call("Echo", token="a.b.c.d").status_code == 403
    ok = harness.call("Echo", token=token)
    assert ok.status_code == 200
    assert ok.json()["headers"]["x-edgefaas-license"] == license_id


def test_an_edited_token_is_forged(harness):
    harness.deploy("Echo")
    _, token = harness.license()
    other_id, _ = harness.license(name="other")
    header, _, signature = token.split(".")
    claims = _claims(token) | {"sub": other_id}  # claim someone else's license, keep the signature
    edited = f"{header}.{_json_b64(claims)}.{signature}"
    answer = harness.call("Echo", token=edited)
    assert answer.status_code == 403 and "signature" in answer.json()["error"]


def test_a_token_signed_with_another_key_is_forged(harness):
    harness.deploy("Echo")
    license_id, _ = harness.license()
    stranger = make_token(HmacSigner(b"k" * 32), license_id)
    assert harness.call("Echo", token=stranger).status_code == 403


def test_a_genuine_token_for_an_unknown_license_is_refused(harness):
    harness.deploy("Echo")
    never_issued = make_token(harness.gateway.licenses.signer, "lic_0123456789abcdef")
    answer = harness.call("Echo", token=never_issued)
    assert answer.status_code == 403 and "unknown or revoked" in answer.json()["error"]


def test_a_revoked_license_is_refused_from_then_on(harness):
    harness.deploy("Echo")
    license_id, token = harness.license()
    assert harness.call("Echo", token=token).status_code == 200
    revoked = harness.delete(f"/system/licenses/{license_id}", auth=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert harness.call("Echo", token=token).status_code == 403
    assert harness.delete("/system/licenses/lic_ffffffffffffffff", auth=ADMIN).status_code == 404


def test_a_public_function_needs_no_token_but_refuses_a_forged_one(harness):
    harness.deploy("Echo", public=True)
    assert harness.call("Echo").status_code == 200
    assert harness.call("Echo", token="efl1.e30.AAAA").status_code == 403
    license_id, token = harness.license()
    assert harness.call("Echo", token=token).status_code == 200
    assert harness.bill("public").json()["functions"][0]["invocations"] == 1
    paid = harness.bill(license_id).json()
    assert paid["functions"][0]["invocations"] == 1 and paid["total"] == 0.0001


def test_quota_answers_429_and_does_not_bill(harness):
    harness.plan("trial", price_per_call=0.5, quota={"calls": 3, "period_s": 3600})
    harness.deploy("Echo")
    license_id, token = harness.license("trial")
    assert [harness.call("Echo", token=token).status_code for _ in range(3)] == [200, 200, 200]
    over = harness.call("Echo", token=token)
    assert over.status_code == 429
    assert 1 <= int(over.headers["retry-after"]) <= 3600
    assert "quota of 3 calls per 3600s" in over.json()["error"]
    bill = harness.bill(license_id).json()
    assert bill["functions"] == [{"function": "Echo", "invocations": 3, "duration_ms": pytest.approx(
        bill["functions"][0]["duration_ms"]), "amount": 1.5}]  # fmt: skip
    assert bill["total"] == 1.5
    # Another license has its own window.
    _, fresh = harness.license("trial", name="fresh")
    assert harness.call("Echo", token=fresh).status_code == 200


def _metric(text: str, name: str, labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_billing_and_license_metrics_agree_with_the_bill(harness):
    harness.plan("trial", price_per_call=0.5, quota={"calls": 3, "period_s": 3600})
    harness.deploy("Echo")
    harness.deploy("Open", public=True)
    license_id, token = harness.license("trial")
    revoked_id, revoked_token = harness.license("trial", name="gone")
    harness.delete(f"/system/licenses/{revoked_id}", auth=ADMIN)
    statuses = [harness.call("Echo", token=token).status_code for _ in range(4)]
    statuses += [harness.call("Echo").status_code, harness.call("Echo", token=revoked_token).status_code]
    statuses += [harness.call("Echo", token="a.b.c").status_code, harness.call("Open").status_code]
    assert statuses == [200, 200, 200, 429, 401, 403, 403, 200]
    text = harness.get("/metrics").text
    bill = harness.bill(license_id).json()
    paid = f'license="{license_id}"'
    assert _metric(text, "edgefaas_billed_calls_total", paid) == bill["functions"][0]["invocations"] == 3
    assert _metric(text, "edgefaas_billed_amount_total", paid) == pytest.approx(bill["total"]) == 1.5
    assert _metric(text, "edgefaas_billed_calls_total", 'license="public"') == 1
    assert _metric(text, "edgefaas_billed_amount_total", 'license="public"') == 0
    assert _metric(text, "edgefaas_billed_calls_total", f'license="{revoked_id}"') is None
    refusals = {
        r: _metric(text, "edgefaas_license_refusals_total", f'reason="{r}"')
        for r in ("no_license", "token_refused", "quota")
    }
    assert refusals == {"no_license": 1, "token_refused": 2, "quota": 1}
    assert _metric(text, "edgefaas_licenses", 'state="active"') == 1
    assert _metric(text, "edgefaas_licenses", 'state="revoked"') == 1


def test_quota_holds_exactly_under_concurrent_calls(harness):
    harness.plan("five", quota={"calls": 5, "period_s": 3600})
    harness.deploy("Slow")
    license_id, token = harness.license("five")

    async def burst():
        calls = [
            harness.client.post("/function/Slow?s=0.02", headers={"Authorization": f"Bearer {token}"})
            for _ in range(25)
        ]
        return await asyncio.gather(*calls)

    statuses = sorted(answer.status_code for answer in harness.run(burst()))
    assert statuses == [200] * 5 + [429] * 20
    assert harness.bill(license_id).json()["functions"][0]["invocations"] == 5


def test_a_call_that_never_reached_the_function_gives_its_quota_back(harness):
    harness.plan("two", quota={"calls": 2, "period_s": 3600})
    harness.deploy("Echo")
    _, token = harness.license("two")
    harness.transport.refuse["echo.fn"] = 10_000
    assert harness.call("Echo", token=token).status_code == 502
    harness.transport.refuse["echo.fn"] = 0
    assert [harness.call("Echo", token=token).status_code for _ in range(3)] == [200, 200, 429]


def test_the_quota_window_survives_a_gateway_restart(tmp_path):
    from .test_gateway_fakes import Harness

    first = Harness(tmp_path)
    first.plan("two", quota={"calls": 2, "period_s": 3600})
    first.deploy("Echo")
    _, token = first.license("two")
    assert first.call("Echo", token=token).status_code == 200
    first.close()
    second = Harness(tmp_path)
    try:
        second.backend.specs = first.backend.specs  # the fake backend keeps nothing on disk
        second.backend.versions = first.backend.versions
        second.gateway.registry.sync()
        assert [second.call("Echo", token=token).status_code for _ in range(2)] == [200, 429]
    finally:
        second.close()


def test_time_is_billed_by_the_plans_price_per_second(harness):
    harness.plan("timed", price_per_call=0.001, price_per_second=2.0)
    harness.deploy("Slow")
    license_id, token = harness.license("timed")
    assert harness.call("Slow", token=token, params={"s": "0.05"}).status_code == 200
    calls = harness.bill(license_id, detail="calls").json()["calls"]
    (call,) = calls
    assert call["duration_ms"] >= 50
    expected = round(0.001 + 2.0 * call["duration_ms"] / 1000, 6)
    assert call["amount"] == pytest.approx(expected, abs=2e-6)


def test_billing_csv_exports(harness):
    harness.plan("flat", price_per_call=0.25)
    harness.deploy("Echo")
    harness.deploy("Boom")
    license_id, token = harness.license("flat")
    for name in ("Echo", "Echo", "Boom"):
        harness.call(name, token=token)
    summary = harness.bill(license_id, format="csv")
    assert summary.headers["content-type"].startswith("text/csv")
    assert f"billing-{license_id}.csv" in summary.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(summary.text)))
    assert rows[0] == ["function", "invocations", "duration_ms", "amount"]
    assert [(r[0], r[1], r[3]) for r in rows[1:]] == [
        ("Boom", "1", "0.250000"),
        ("Echo", "2", "0.500000"),
        ("TOTAL", "3", "0.750000"),
    ]
    calls = list(csv.DictReader(io.StringIO(harness.bill(license_id, format="csv", detail="calls").text)))
    assert len(calls) == 3 and {c["status"] for c in calls} == {"200", "500"}
    assert harness.bill("lic_ffffffffffffffff").status_code == 404


def test_plans_are_listed_added_and_never_changed(harness):
    names = [plan["name"] for plan in harness.get("/system/plans", auth=ADMIN).json()]
    assert names == ["free", "standard"]
    harness.plan("gold", price_per_call=1, description="the best")
    again = harness.post("/system/plans", json={"name": "gold", "price_per_call": 2}, auth=ADMIN)
    assert again.status_code == 409
    bad = harness.post("/system/plans", json={"name": "neg", "price_per_call": -1}, auth=ADMIN)
    assert bad.status_code == 400
    not_a_number = b'{"name": "nan", "price_per_call": NaN}'
    assert harness.post("/system/plans", content=not_a_number, auth=ADMIN).status_code == 400
    gold = next(p for p in harness.get("/system/plans", auth=ADMIN).json() if p["name"] == "gold")
    assert gold == {"name": "gold", "description": "the best", "price_per_call": 1.0, "price_per_second": 0.0,
                    "quota": None}  # fmt: skip


def test_token_reading_refuses_other_algorithms_and_short_keys():
    signer = HmacSigner(b"s" * 32)
    token = make_token(signer, "lic_0123456789abcdef")
    assert read_token(signer, token) == "lic_0123456789abcdef"

    class OtherAlgorithm(HmacSigner):
        algorithm = "none"

    with pytest.raises(InvalidToken):
        read_token(signer, make_token(OtherAlgorithm(b"s" * 32), "lic_0123456789abcdef"))
    with pytest.raises(ValueError, match="32 bytes"):
        HmacSigner(b"short")


def test_tokens_are_jws_that_a_jwt_library_verifies_with_the_shared_key(harness):
    license_id, token = harness.license()
    key = _hmac_key(harness)
    claims = jwt.decode(token, key, algorithms=["HS256"])
    assert claims["sub"] == license_id and isinstance(claims["iat"], int)
    assert jwt.get_unverified_header(token) == _part(token, 0)
    header, _, signature = token.split(".")
    edited = f"{header}.{_json_b64(_claims(token) | {'sub': 'lic_ffffffffffffffff'})}.{signature}"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(edited, key, algorithms=["HS256"])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, b"k" * 32, algorithms=["HS256"])


def test_a_token_a_jwt_library_signs_with_the_shared_key_is_accepted(harness):
    harness.deploy("Echo")
    license_id, _ = harness.license()
    token = jwt.encode({"sub": license_id, "iat": 0}, _hmac_key(harness), algorithm="HS256")
    answer = harness.call("Echo", token=token)
    assert answer.status_code == 200 and answer.json()["headers"]["x-edgefaas-license"] == license_id


def test_a_token_of_the_earlier_format_is_refused_naming_the_new_one(harness):
    harness.deploy("Echo")
    license_id, _ = harness.license()
    # efl1.<claims>.<signature>, signed with the gateway's own key: genuine, but no JWS.
    signed = f"efl1.{_json_b64({'alg': 'HS256', 'iat': 0, 'kid': 'x', 'lic': license_id})}"
    old = f"{signed}.{_b64(hmac.new(_hmac_key(harness), signed.encode(), hashlib.sha256).digest())}"
    answer = harness.call("Echo", token=old)
    assert answer.status_code == 403
    assert answer.json()["error"] == (
        "license token refused: not a JWS compact token (header.payload.signature); re-issue it"
    )
    assert harness.bill(license_id).json()["functions"] == []


def test_an_unsigned_token_or_one_with_unknown_extensions_is_refused(harness):
    harness.deploy("Echo")
    license_id, token = harness.license()
    unsigned = f"{_json_b64({'alg': 'none'})}.{_json_b64({'sub': license_id, 'iat': 0})}."
    answer = harness.call("Echo", token=unsigned)
    assert answer.status_code == 403 and "accepts HS256 only" in answer.json()["error"]
    signer = harness.gateway.licenses.signer
    critical = f"{_json_b64({'alg': 'HS256', 'crit': ['exp'], 'exp': 0})}.{_json_b64({'sub': license_id})}"
    critical += "." + _b64(signer.sign(critical.encode()))
    answer = harness.call("Echo", token=critical)
    assert answer.status_code == 403 and "crit" in answer.json()["error"]
    # One token, one spelling: a signature re-spelt in non-canonical base64url is refused.
    header, claims, signature = token.split(".")
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    respelt = signature[:-1] + alphabet[alphabet.index(signature[-1]) ^ 1]  # flips an unused bit
    assert base64.urlsafe_b64decode(respelt + "=") == base64.urlsafe_b64decode(signature + "=")
    assert harness.call("Echo", token=f"{header}.{claims}.{respelt}").status_code == 403
    assert harness.call("Echo", token=token).status_code == 200


def test_plan_prices_are_exact_in_micros():
    plan = Plan.from_json({"name": "p", "price_per_call": 0.1, "price_per_second": 0.3})
    assert plan.price_per_call_micros == 100_000 and plan.price_per_second_micros == 300_000
    assert plan.price(1_500_000) == 100_000 + 450_000
    assert plan.price(1) == 100_000  # 0.3 micro rounds down
    assert plan.price(2) == 100_001  # 0.6 micro rounds up
