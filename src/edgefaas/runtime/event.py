"""What a function's ``handle(event, context)`` receives, and how it calls other functions."""

from __future__ import annotations

import json as jsonlib
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

GATEWAY_URL_ENV = "EDGEFAAS_GATEWAY_URL"
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8080"
CALL_ID_HEADER = "X-Call-Id"
PARENT_CALL_ID_HEADER = "X-Parent-Call-Id"
# Where a function's secrets are: OpenFaaS's mount path, unless the backend names another
# directory (the local backend, whose functions are processes, not containers).
SECRETS_DIR_ENV = "EDGEFAAS_SECRETS_DIR"
OPENFAAS_SECRETS_DIR = "/var/openfaas/secrets"

# A function-to-function call goes through the gateway without any proxy the pod's
# environment might name: the gateway is always a direct neighbour.
# The CA that signed the gateway's certificate, as PEM text (the gateway hands it to its pods in
# the environment: it is public, and a changed CA then rolls the pods).
GATEWAY_CA_ENV = "EDGEFAAS_GATEWAY_CA"


def gateway_opener(ca_pem: str | None = None) -> urllib.request.OpenerDirector:
    """What calls the gateway: never through a proxy, and over HTTPS verifying the gateway by
    the blueprint's CA alone when one is given (the system's store otherwise)."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    pem = os.environ.get(GATEWAY_CA_ENV) if ca_pem is None else ca_pem
    if pem:
        handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cadata=pem)))
    return urllib.request.build_opener(*handlers)


_OPENER = gateway_opener()


class BadRequest(Exception):
    """Raise from a handler to answer 400 with this message (the caller sent bad input)."""


class Headers(Mapping[str, str]):
    """Request headers; names are case-insensitive, as in HTTP."""

    def __init__(self, items: Mapping[str, str] | list[tuple[str, str]] | None = None) -> None:
        pairs = items.items() if isinstance(items, Mapping) else (items or [])
        self._items: dict[str, str] = {}
        for name, value in pairs:
            key = name.lower()
            # Repeated headers join with ", " as RFC 9110 allows for list-valued fields.
            self._items[key] = f"{self._items[key]}, {value}" if key in self._items else value

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass
class Event:
    """One call: the request as the function sees it (path is relative to the function)."""

    body: bytes = b""
    headers: Headers = field(default_factory=Headers)
    method: str = "POST"
    path: str = "/"
    query: dict[str, str] = field(default_factory=dict)
    query_string: str = ""

    def json(self, default: Any = None) -> Any:
        """The body parsed as JSON; ``default`` when empty; BadRequest (-> 400) when not JSON."""
        if not self.body.strip():
            return default
        try:
            return jsonlib.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise BadRequest(f"request body is not JSON: {exc or 'nested too deeply'}") from None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class CallResult:
    """The answer of another function called through the gateway."""

    status: int
    headers: Headers
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)


class CallError(Exception):
    """Calling another function failed (it answered >= 400, or the gateway was unreachable)."""

    def __init__(self, function: str, status: int | None, detail: str) -> None:
        where = f"answered {status}" if status is not None else "could not be reached"
        super().__init__(f"call to {function} {where}: {detail}")
        self.function = function
        self.status = status
        self.detail = detail


@dataclass
class Context:
    """Who is running and on whose behalf; ``call`` reaches other functions through the gateway."""

    function_name: str
    call_id: str = ""
    parent_call_id: str = ""
    hostname: str = field(default_factory=lambda: os.uname().nodename)
    gateway_url: str = field(default_factory=lambda: os.environ.get(GATEWAY_URL_ENV, DEFAULT_GATEWAY_URL))
    # The caller's Authorization header, passed on so that nested calls bill the same license.
    authorization: str = field(default="", repr=False)

    def call(
        self,
        name: str,
        body: bytes | str | None = None,
        *,
        json: Any = None,
        method: str = "POST",
        path: str = "",
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        check: bool = True,
    ) -> CallResult:
        """Call function ``name`` through the gateway, as the same license, with this call as parent.

        With ``check`` (the default) an answer >= 400 raises CallError, so a failing chain
        fails loudly instead of passing an error body on as data.
        """
        data: bytes | None
        send_headers = {k: v for k, v in (headers or {}).items()}
        if json is not None:
            data = jsonlib.dumps(json).encode()
            send_headers.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        if self.authorization and "Authorization" not in send_headers:
            send_headers["Authorization"] = self.authorization
        if self.call_id:
            send_headers[PARENT_CALL_ID_HEADER] = self.call_id
        url = f"{self.gateway_url.rstrip('/')}/function/{urllib.parse.quote(name, safe='')}"
        if path:
            url += "/" + path.lstrip("/")
        if query:
            url += "?" + urllib.parse.urlencode(query)
        request = urllib.request.Request(url, data=data, headers=send_headers, method=method.upper())
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                result = CallResult(response.status, Headers(list(response.headers.items())), response.read())
        except urllib.error.HTTPError as exc:
            result = CallResult(exc.code, Headers(list(exc.headers.items())), exc.read())
        except (urllib.error.URLError, OSError) as exc:
            raise CallError(name, None, str(getattr(exc, "reason", exc))) from None
        if check and result.status >= 400:
            raise CallError(name, result.status, result.text[:500])
        return result

    def secret(self, name: str) -> str:
        """The value of secret ``name`` (a secret the function's deployment names in ``secrets``),
        read from its file as OpenFaaS functions read /var/openfaas/secrets/<name>."""
        folder = os.environ.get(SECRETS_DIR_ENV) or OPENFAAS_SECRETS_DIR
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"{name!r} is not a secret's name")
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            return handle.read()

    def log(self, message: str) -> None:
        """One line on stdout, tagged with the call id (the runtime's logs go to stdout)."""
        print(f"{self.function_name} {self.call_id or '-'} {message}", flush=True)
