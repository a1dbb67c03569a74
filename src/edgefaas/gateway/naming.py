"""OpenFaaS's ``<name>.<namespace>`` form, and the namespaces a gateway serves.

OpenFaaS clients (faas-cli included) call ``/function/<name>.<namespace>`` and name a
namespace in queries and bodies. A function's own name never holds a dot (EdgeFaaS's name
rule, as OpenFaaS's Kubernetes provider requires DNS labels), so in a dotted name the part
after the last dot is always a namespace, as OpenFaaS's gateway splits it: one this gateway
serves is dropped, any other is refused naming it. A name without a dot is in the gateway's
namespace.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ApiError


def function_name(given: str, served: Sequence[str]) -> str:
    """The function's name in ``given`` (``name`` or ``name.namespace``); ApiError(404) when the
    namespace is not one this gateway serves."""
    name, dot, namespace = given.rpartition(".")
    if not dot:
        return given
    if namespace in served:
        return name
    raise ApiError(
        404,
        f"function {given!r} not found: {namespace!r} is not a namespace this gateway serves "
        f"(it serves {', '.join(served)})",
    )


def check_namespace(namespace: str | None, served: Sequence[str], where: str) -> None:
    """ApiError(400) naming ``where`` when ``namespace`` is given and not served here."""
    if namespace and namespace not in served:
        raise ApiError(
            400,
            f"{where} {namespace!r} is not a namespace this gateway serves (it serves {', '.join(served)})",
        )
