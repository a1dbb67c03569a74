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
]
