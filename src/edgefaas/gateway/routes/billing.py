"""Plans, licenses and bills: /system/plans, /system/licenses and /system/billing."""

from __future__ import annotations

import csv
import io
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import schemas
from ..errors import ApiError, not_found
from ..ledger import PUBLIC_LICENSE
from ..licensing.plans import Plan, money
from ..state import Gateway
from ..timestamps import iso_time
from .admin import admin, json_body, query_param


@admin
async def list_plans(request: Request, gateway: Gateway) -> Response:
    plans = await run_in_threadpool(gateway.license_store.plans)
    return JSONResponse([plan.to_json() for plan in plans])


@admin
async def create_plan(request: Request, gateway: Gateway) -> Response:
    plan = Plan.from_json(await json_body(request, gateway, schemas.PLAN_REQUEST))
    if not await run_in_threadpool(gateway.license_store.add_plan, plan):
        raise ApiError(409, f"plan {plan.name!r} exists; plans never change, create another")
    return JSONResponse(plan.to_json(), status_code=201)


@admin
async def list_licenses(request: Request, gateway: Gateway) -> Response:
    licenses = await run_in_threadpool(gateway.license_store.licenses)
    return JSONResponse([license.to_json() for license in licenses])


@admin
async def create_license(request: Request, gateway: Gateway) -> Response:
    data = await json_body(request, gateway, schemas.LICENSE_REQUEST)
    license, token = await run_in_threadpool(gateway.licenses.issue, data["name"], data["plan"])
    return JSONResponse({**license.to_json(), "token": token}, status_code=201)


@admin
async def revoke_license(request: Request, gateway: Gateway) -> Response:
    license_id = request.path_params["license_id"]
    found = await run_in_threadpool(gateway.license_store.license, license_id)
    if found is None:
        raise not_found(f"license {license_id!r}")
    await run_in_threadpool(gateway.licenses.revoke, license_id)
    revoked = await run_in_threadpool(gateway.license_store.license, license_id)
    assert revoked is not None
    return JSONResponse(revoked.to_json())


@admin
async def bill(request: Request, gateway: Gateway) -> Response:
    license_id = query_param(request, "license", schemas.LICENSE_ID)
    fmt = query_param(request, "format", {"type": "string", "enum": ["json", "csv"]}, default="json")
    detail = query_param(
        request, "detail", {"type": "string", "enum": ["summary", "calls"]}, default="summary"
    )
    plan_name = "none"
    if license_id != PUBLIC_LICENSE:
        found = await run_in_threadpool(gateway.license_store.license, license_id)
        if found is None:
            raise not_found(f"license {license_id!r}")
        plan_name = found.plan
    if detail == "calls":
        entries = await run_in_threadpool(lambda: list(gateway.ledger.entries(license_id)))
        if fmt == "csv":
            return _csv_response(
                license_id,
                ["call_id", "function", "started_at", "duration_ms", "status", "amount", "parent_call_id"],
                [
                    [e.call_id, e.function, iso_time(e.started_at), e.duration_us / 1000, e.status,
                     f"{money(e.amount_micros):.6f}", e.parent_call_id]
                    for e in entries
                ],
            )  # fmt: skip
        return JSONResponse(
            {
                "license": license_id,
                "plan": plan_name,
                "calls": [
                    {
                        "call_id": e.call_id,
                        "function": e.function,
                        "started_at": iso_time(e.started_at),
                        "duration_ms": e.duration_us / 1000,
                        "status": e.status,
                        "amount": money(e.amount_micros),
                        "parent_call_id": e.parent_call_id,
                    }
                    for e in entries
                ],
                "total": money(sum(e.amount_micros for e in entries)),
            }
        )
    usage = await run_in_threadpool(gateway.ledger.usage, license_id)
    total = sum(u.amount_micros for u in usage)
    if fmt == "csv":
        rows: list[list[Any]] = [
            [u.function, u.invocations, u.duration_us / 1000, f"{money(u.amount_micros):.6f}"] for u in usage
        ]
        rows.append(["TOTAL", sum(u.invocations for u in usage), sum(u.duration_us for u in usage) / 1000,
                     f"{money(total):.6f}"])  # fmt: skip
        return _csv_response(license_id, ["function", "invocations", "duration_ms", "amount"], rows)
    return JSONResponse(
        {
            "license": license_id,
            "plan": plan_name,
            "functions": [
                {
                    "function": u.function,
                    "invocations": u.invocations,
                    "duration_ms": u.duration_us / 1000,
                    "amount": money(u.amount_micros),
                }
                for u in usage
            ],
            "total": money(total),
        }
    )


def _csv_response(license_id: str, header: list[str], rows: list[list[Any]]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="billing-{license_id}.csv"'},
    )
