"""edgefaas.gateway.validation: bodies and query values checked against the published schemas."""

from __future__ import annotations

import json

import pytest

from edgefaas.gateway import schemas
from edgefaas.gateway.errors import ApiError
from edgefaas.gateway.validation import check, parse_json

pytestmark = pytest.mark.unit

CODE = "def handle(event, context):\n    return event\n"


def refusal(body: object, schema: schemas.Schema) -> ApiError:
    with pytest.raises(ApiError) as raised:
        parse_json(json.dumps(body).encode(), schema)
    return raised.value


def test_a_conforming_body_comes_back_as_parsed():
    body = {"service": "Echo", "code": CODE, "envVars": {"A": "1"}, "replicas": 2, "public": True}
    assert parse_json(json.dumps(body).encode(), schemas.FUNCTION_DEPLOYMENT) == body


def test_every_problem_is_named_by_its_field_path_and_rule():
    body = {
        "service": "9bad",
        "code": CODE,
        "colour": 1,
        "constraints": ["gpu", 3],
        "limits": {"memory": "lots", "disk": "1Gi"},
        "replicas": 65,
    }
    error = refusal(body, schemas.FUNCTION_DEPLOYMENT)
    assert error.status == 400
    problems = set(error.message.split("; "))
    assert problems == {
        f"body.service must match {schemas.FUNCTION_NAME['pattern']}",
        "body.colour is not a known field",
        "body.constraints[0] must match ^ *[^= ]+ *==? *[^= ]+ *$",
        "body.constraints[1] must be string",
        r"body.limits.memory must match ^[0-9]+(\.[0-9]+)?([KMGT]i?|[kmMGT])?$",
        "body.limits.disk is not a known field",
        "body.replicas must be <= 64",
    }


def test_each_missing_field_is_named_once():
    assert refusal({}, schemas.LICENSE_REQUEST).message == "body.name is required; body.plan is required"


def test_a_value_of_the_wrong_type_is_named_once_not_once_per_rule_it_cannot_meet():
    assert refusal([1, 2], schemas.FUNCTION_DEPLOYMENT).message == "body must be object"


def test_nullable_admits_null_beside_its_type_only():
    assert parse_json(b'{"name": "p", "quota": null}', schemas.PLAN_REQUEST)["quota"] is None
    assert refusal({"name": "p", "quota": "x"}, schemas.PLAN_REQUEST).message == "body.quota must be object"
    assert refusal({"name": None}, schemas.PLAN_REQUEST).message == "body.name must be string"


def test_the_schemas_own_wording_for_one_of():
    message = refusal({"service": "Echo", "code": CODE, "image": "x"}, schemas.FUNCTION_DEPLOYMENT).message
    assert message == schemas.FUNCTION_DEPLOYMENT["x-oneOf-message"]


def test_the_answer_never_quotes_the_offending_value():
    secret = "s3cret-" * 1000
    message = refusal(
        {"service": "Echo", "code": CODE, "envVars": {"A": [secret]}}, schemas.FUNCTION_DEPLOYMENT
    ).message
    assert message == "body.envVars.A must be string"


def test_integers_are_whole_numbers_and_booleans_are_not_numbers():
    assert parse_json(b'{"replicas": 2.0}', schemas.SCALE_REQUEST) == {"replicas": 2.0}
    assert refusal({"replicas": 1.5}, schemas.SCALE_REQUEST).message == "body.replicas must be integer"
    assert refusal({"replicas": True}, schemas.SCALE_REQUEST).message == "body.replicas must be integer"


def test_at_most_ten_problems_are_listed():
    body = {"service": "Echo", "code": CODE, **{f"extra{i}": 1 for i in range(20)}}
    assert len(refusal(body, schemas.FUNCTION_DEPLOYMENT).message.split("; ")) == 10


def test_query_values_are_named_as_the_caller_names_them():
    check("lic_0123456789abcdef", schemas.LICENSE_ID, "query parameter license")
    with pytest.raises(ApiError) as raised:
        check("lic_nope", schemas.LICENSE_ID, "query parameter license")
    assert raised.value.message == f"query parameter license must match {schemas.LICENSE_ID['pattern']}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "a JSON body is required"),
        (b"{not json", "body is not JSON"),
        (b'{"replicas": NaN}', "NaN is not a JSON number"),
        (b"[" * 100_000 + b"]" * 100_000, "body is nested too deeply"),
    ],
)
def test_bodies_that_are_not_json_are_400(body, message):
    with pytest.raises(ApiError, match=message) as raised:
        parse_json(body, schemas.SCALE_REQUEST)
    assert raised.value.status == 400
