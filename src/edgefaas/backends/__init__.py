"""Where functions run: one narrow interface (base.Backend), several places.

- ``local``: each function a supervised runtime process on this machine (faasd's
  precedent: development, and devices too small for K3S);
- ``kubernetes``: each function a Deployment + Service on K3S, its code in a ConfigMap
  (K3S through the kubernetes client; the gateway reaches functions at their ClusterIP).

The gateway only ever talks to a Backend; it does not know which one.
"""

from __future__ import annotations

from .base import (
    Backend,
    BackendError,
    Constraint,
    DeployError,
    FunctionExists,
    FunctionNotFound,
    FunctionSpec,
    FunctionStatus,
    FunctionUnavailable,
    NodeInfo,
    Unsupported,
)

__all__ = [
    "Backend",
    "BackendError",
    "Constraint",
    "DeployError",
    "FunctionExists",
    "FunctionNotFound",
    "FunctionSpec",
    "FunctionStatus",
    "FunctionUnavailable",
    "NodeInfo",
    "Unsupported",
    "available_backends",
]


def available_backends() -> list[str]:
    """Backend kinds this installation can run (kubernetes only once its module exists)."""
    import importlib.util

    kinds = ["local"]
    if importlib.util.find_spec("edgefaas.backends.kubernetes") is not None:
        kinds.append("kubernetes")
    return kinds
