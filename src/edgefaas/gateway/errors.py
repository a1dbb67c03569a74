"""Errors the API answers on purpose: each one a status and a JSON body {"error": ...}."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse


class ApiError(Exception):
    """Raised anywhere in a route; the app turns it into its status and {"error": message}."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self, call_id: str | None = None) -> JSONResponse:
        headers = dict(self.headers)
        if call_id:
            headers["X-Call-Id"] = call_id
        return JSONResponse({"error": self.message, **self.extra}, status_code=self.status, headers=headers)


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")
