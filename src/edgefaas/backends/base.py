"""The one interface between the gateway and wherever functions run.

It follows OpenFaaS's faas-provider: deploy, update, delete, list, get, scale, and a way
to reach a function (here ``endpoint``: the URL to call). Everything about a function
travels in a FunctionSpec; the gateway validated it before, so a backend only refuses
what it cannot do (``Unsupported``) or could not make run (``DeployError``).

How a Kubernetes backend fills it: a function is a Deployment + Service named after it
(object names are lowercase DNS labels, so a backend maps ``FuncA`` to e.g.
``funca-<short hash>`` and keeps the real name in a label), its ``code`` a ConfigMap
mounted into the generic runtime image, ``constraints`` a nodeSelector,
``limits``/``requests`` the container's resources, ``public`` and the rest labels and
annotations, so ``list``/``get`` can rebuild the spec from the cluster alone.
``endpoint`` is then the Service's cluster URL, computed without any API call.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

# Case-sensitive, starts with a letter, then letters, digits, "-" or "_": FuncA, system_info.
FUNCTION_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,62}$"
_FUNCTION_NAME_RE = re.compile(FUNCTION_NAME_PATTERN)

# A secret's name: what Kubernetes accepts for a Secret's name and, OpenFaaS's way, as its key
# (the file's name under /var/openfaas/secrets): a DNS subdomain, lowercase.
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_NAME_MAX = 253
# A Secret object is at most 1 MiB in Kubernetes; what it holds besides the value fits in the rest.
SECRET_VALUE_MAX = 1_000_000

# Node labels every backend reports (K3S nodes get them from the deploys).
PROFILE_LABEL = "edgefaas.io/profile"
HOSTNAME_LABEL = "kubernetes.io/hostname"
ARCH_LABEL = "kubernetes.io/arch"


class BackendError(Exception):
    """Base of everything a backend raises on purpose."""


class FunctionNotFound(BackendError):
    def __init__(self, name: str) -> None:
        super().__init__(f"function {name!r} not found")
        self.name = name


class FunctionExists(BackendError):
    def __init__(self, name: str) -> None:
        super().__init__(f"function {name!r} already exists (PUT updates it)")
        self.name = name


class FunctionUnavailable(BackendError):
    """The function exists but has no ready replica: restarting, or scaled to zero.

    ``scaled_to_zero`` tells the gateway that a call should wake the function (scale it
    to one and wait until it is ready) rather than wait for a restart. ``unready_for`` is how
    long it has had no ready replica, where the backend knows (0 otherwise): a function down
    for longer than a restart takes (its device lost power) is refused at once, not waited on."""

    def __init__(self, message: str, scaled_to_zero: bool = False, unready_for: float = 0.0) -> None:
        super().__init__(message)
        self.scaled_to_zero = scaled_to_zero
        self.unready_for = unready_for


class BackendUnreachable(BackendError):
    """The backend's control plane cannot be reached or is not ready (a K3S server restarting):
    the same request may succeed when tried again."""


class DeployError(BackendError):
    """The function could not be made to run: it failed to start, or no node fits."""


class SecretNotFound(BackendError):
    def __init__(self, name: str) -> None:
        super().__init__(f"secret {name!r} not found")
        self.name = name


class SecretExists(BackendError):
    def __init__(self, name: str) -> None:
        super().__init__(f"secret {name!r} already exists (PUT updates it)")
        self.name = name


class Unsupported(BackendError):
    """The spec asks for something this backend cannot do (e.g. an image on the local backend)."""


def valid_function_name(name: str) -> bool:
    return bool(_FUNCTION_NAME_RE.match(name))


@dataclass(frozen=True)
class Constraint:
    """A placement rule ``key=value`` on node labels (OpenFaaS's ``node.labels.`` prefix allowed)."""

    key: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Constraint:
        key, sep, value = text.partition("==") if "==" in text else text.partition("=")
        # Only spaces are trimmed: the published schema's pattern allows exactly those around the parts.
        key, value = key.strip(" "), value.strip(" ")
        key = key.removeprefix("node.labels.") or key
        if not sep or not key or not value:
            raise ValueError(f"constraint {text!r} is not key=value")
        return cls(key, value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) == self.value

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


@dataclass(frozen=True)
class FunctionSpec:
    """What to run: OpenFaaS's FunctionDeployment plus EdgeFaaS's ``code`` and ``public``."""

    name: str
    code: str | None = None
    image: str | None = None
    env_vars: Mapping[str, str] = field(default_factory=dict)
    env_process: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    limits: Mapping[str, str] = field(default_factory=dict)
    requests: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    read_only_root_filesystem: bool = False
    public: bool = False
    replicas: int = 1

    def __post_init__(self) -> None:
        if not valid_function_name(self.name):
            raise ValueError(f"function name {self.name!r} does not match {FUNCTION_NAME_PATTERN}")
        if (self.code is None) == (self.image is None):
            raise ValueError("a function needs exactly one of code or image")
        if self.replicas < 0:
            raise ValueError("replicas cannot be negative")
        for text in self.constraints:
            Constraint.parse(text)

    @property
    def parsed_constraints(self) -> list[Constraint]:
        return [Constraint.parse(text) for text in self.constraints]

    @property
    def exec_timeout(self) -> float:
        """Seconds the runtime lets one call run (OpenFaaS's exec_timeout); 30 when unset or unreadable.

        Backends give a retiring replica this long, plus a margin, to finish its calls.
        """
        from edgefaas.runtime.server import parse_duration

        raw = self.env_vars.get("exec_timeout") or self.env_vars.get("EDGEFAAS_EXEC_TIMEOUT") or "30"
        try:
            return parse_duration(raw) or 30.0
        except ValueError:
            return 30.0

    @property
    def code_sha256(self) -> str | None:
        return hashlib.sha256(self.code.encode()).hexdigest() if self.code is not None else None

    def with_replicas(self, replicas: int) -> FunctionSpec:
        return replace(self, replicas=replicas)

    def to_json(self, include_code: bool = True) -> dict[str, Any]:
        """OpenFaaS's camelCase field names, as the API shows them and backends store them."""
        data: dict[str, Any] = {
            "service": self.name,
            "image": self.image,
            "envProcess": self.env_process,
            "envVars": dict(self.env_vars),
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "constraints": list(self.constraints),
            "limits": dict(self.limits),
            "requests": dict(self.requests),
            "secrets": list(self.secrets),
            "readOnlyRootFilesystem": self.read_only_root_filesystem,
            "public": self.public,
            "replicas": self.replicas,
            "codeSha256": self.code_sha256,
        }
        if include_code:
            data["code"] = self.code
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FunctionSpec:
        """The inverse of to_json (and the gateway's FunctionDeployment body, already validated)."""
        return cls(
            name=data["service"],
            code=data.get("code"),
            image=data.get("image"),
            env_vars=dict(data.get("envVars") or {}),
            env_process=data.get("envProcess"),
            labels=dict(data.get("labels") or {}),
            annotations=dict(data.get("annotations") or {}),
            constraints=tuple(data.get("constraints") or ()),
            limits=dict(data.get("limits") or {}),
            requests=dict(data.get("requests") or {}),
            secrets=tuple(data.get("secrets") or ()),
            read_only_root_filesystem=bool(data.get("readOnlyRootFilesystem", False)),
            public=bool(data.get("public", False)),
            replicas=int(data.get("replicas", 1)),
        )


@dataclass(frozen=True)
class FunctionStatus:
    """A deployed function as the backend sees it now."""

    spec: FunctionSpec
    available_replicas: int
    created_at: float  # epoch seconds of the first deploy
    updated_at: float  # epoch seconds of the last deploy, update or scale
    version: int  # 1 at deploy, +1 per code/spec update
    nodes: tuple[str, ...] = ()  # where the ready replicas run
    restarts: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def replicas(self) -> int:
        return self.spec.replicas


@dataclass(frozen=True)
class LogLine:
    """One line a function wrote, as OpenFaaS's logs.Message carries it."""

    instance: str  # the replica that wrote it: a pod's name, a local process's name-pid
    timestamp: float  # epoch seconds
    text: str


def select_lines(
    lines: list[LogLine], tail: int = 0, since: float | None = None, instance: str | None = None
) -> list[LogLine]:
    """``lines`` oldest first, from ``instance`` and at or after ``since`` when given, the last
    ``tail`` of them (all when ``tail`` <= 0, as OpenFaaS's log request means it)."""
    kept = sorted(
        (
            line
            for line in lines
            if (since is None or line.timestamp >= since) and (not instance or line.instance == instance)
        ),
        key=lambda line: line.timestamp,
    )
    return kept[-tail:] if tail > 0 else kept


@dataclass(frozen=True)
class NodeInfo:
    """One device that can run functions."""

    name: str
    profile: str
    arch: str
    os: str
    ready: bool
    cpu: Mapping[str, Any]
    memory: Mapping[str, int]
    gpus: tuple[Mapping[str, str], ...]
    labels: Mapping[str, str]
    functions: tuple[str, ...]
    role: str = ""
    certification: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "profile": self.profile,
            "arch": self.arch,
            "os": self.os,
            "ready": self.ready,
            "cpu": dict(self.cpu),
            "memory": dict(self.memory),
            "gpus": [dict(g) for g in self.gpus],
            "labels": dict(self.labels),
            "functions": list(self.functions),
            "role": self.role,
            "certification": dict(self.certification) if self.certification is not None else None,
        }


class Backend(ABC):
    """Where functions run. Methods block (they may start processes or call an API server):
    the gateway calls them off its event loop, except ``endpoint``, which must not do I/O."""

    kind: ClassVar[str]
    orchestration: ClassVar[str]

    def start(self) -> None:  # noqa: B027 - optional hook
        """Begin: restore what was deployed before (local), connect (kubernetes)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop what start() began; the local backend stops its function processes."""

    @abstractmethod
    def deploy(self, spec: FunctionSpec) -> FunctionStatus:
        """Run a new function; FunctionExists if the name is taken."""

    @abstractmethod
    def update(self, spec: FunctionSpec) -> FunctionStatus:
        """Roll a function to ``spec`` with no failed call; on failure the old version keeps serving."""

    @abstractmethod
    def delete(self, name: str) -> None: ...

    @abstractmethod
    def get(self, name: str) -> FunctionStatus: ...

    @abstractmethod
    def list(self) -> list[FunctionStatus]: ...

    @abstractmethod
    def scale(self, name: str, replicas: int) -> FunctionStatus: ...

    @abstractmethod
    def endpoint(self, name: str) -> str:
        """The base URL to call the function at now (no I/O: called on every invocation).

        FunctionNotFound if there is no such function, FunctionUnavailable if it has no
        ready replica."""

    @abstractmethod
    def nodes(self) -> list[NodeInfo]: ...

    def node_removals(self) -> list[dict[str, Any]]:
        """Nodes the node authentication server removed: {node, reason, at}, newest first."""
        return []

    def logs(
        self, name: str, tail: int = 0, since: float | None = None, instance: str | None = None
    ) -> list[LogLine]:
        """The function's log lines (its stdout and stderr), as ``select_lines`` chooses them;
        FunctionNotFound if there is no such function."""
        raise Unsupported(f"the {self.kind} backend does not keep logs")

    def namespaces(self) -> list[str]:
        return ["edgefaas-fn"]

    # Secrets (OpenFaaS's /system/secrets), in the functions' namespace. A value is never
    # returned: a function reads it from its file (SECRETS_DIR on Kubernetes).

    def list_secrets(self) -> list[str]:
        """The names of the secrets functions may use, sorted."""
        raise Unsupported(f"the {self.kind} backend keeps no secrets")

    def create_secret(self, name: str, value: bytes) -> None:
        """SecretExists if ``name`` is taken."""
        raise Unsupported(f"the {self.kind} backend keeps no secrets")

    def update_secret(self, name: str, value: bytes) -> None:
        """SecretNotFound if there is no such secret; functions see the new value (Kubernetes
        refreshes mounted Secrets within its sync period)."""
        raise Unsupported(f"the {self.kind} backend keeps no secrets")

    def delete_secret(self, name: str) -> None:
        """SecretNotFound if there is no such secret."""
        raise Unsupported(f"the {self.kind} backend keeps no secrets")
