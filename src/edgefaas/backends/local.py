"""The local backend: every function a supervised runtime process on this machine.

OpenFaaS's faasd is the precedent (functions without Kubernetes, for small devices).
Each replica is ``python -m edgefaas.runtime`` on its own loopback port (the runtime
binds port 0 and writes the port it got to a file, so ports never collide). A watcher
thread restarts replicas that die (with backoff); the gateway's shutdown stops them all,
and each runtime also drains and exits by itself if the gateway is killed.

Update is a rollout with no failed call: start the new replicas and wait until they are
ready, switch ``endpoint`` to them in one assignment, then retire the old ones after
``drain_delay`` (calls already routed to them finish; the runtime drains on SIGTERM).
If the new version does not start, nothing is switched and the old one keeps serving.

State lives under ``data_dir/functions/<name>/`` (spec.json, code files, the log), so a
restarted gateway brings back what was deployed.

Secrets (``/system/secrets``) are files under ``data_dir/secrets/`` (local_secrets); a function
that names some finds them in the directory ``EDGEFAAS_SECRETS_DIR`` names, which the runtime's
``context.secret(name)`` reads.

No isolation: a function runs as the gateway's user, with the gateway's Python. Its
environment is cleaned (no gateway settings or secrets leak into it), but nothing stops it
from reading files the gateway can read, and ``limits`` are recorded, not enforced. That
is fine for development and a single-tenant device; untrusted code belongs on K3S.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar

import edgefaas
from edgefaas.runtime.event import SECRETS_DIR_ENV
from edgefaas.runtime.hostinfo import describe_host
from edgefaas.runtime.server import READY_PATH

from .base import (
    ARCH_LABEL,
    HOSTNAME_LABEL,
    PROFILE_LABEL,
    Backend,
    DeployError,
    FunctionExists,
    FunctionNotFound,
    FunctionSpec,
    FunctionStatus,
    FunctionUnavailable,
    LogLine,
    NodeInfo,
    Unsupported,
    select_lines,
)
from .local_secrets import SecretFiles

log = logging.getLogger("edgefaas.backends.local")

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_MAX_RESTART_BACKOFF = 10.0
# Each function's log: one JSON object per line, {"t": epoch seconds, "i": replica, "x": text}.
LOG_FILE = "function.log"
# What a function inherits from the gateway's environment: enough to run Python, nothing more
# (the gateway's own settings, its admin password among them, must not leak into functions).
_INHERITED_ENV = frozenset(
    {"PATH", "HOME", "LANG", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "VIRTUAL_ENV", "SYSTEMROOT"}
)


@dataclass(eq=False)
class _Replica:
    process: subprocess.Popen[bytes]
    url: str
    version: int
    started: float = field(default_factory=time.monotonic)

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass(eq=False)
class _Function:
    spec: FunctionSpec
    version: int
    code_path: Path
    created_at: float
    updated_at: float
    # Swapped in one assignment by rollouts, so endpoint() never sees a half-built list.
    replicas: tuple[_Replica, ...] = ()
    restarts: int = 0
    restart_after: float = 0.0
    backoff: float = 0.5
    # Serialises update/scale/delete/restart of this one function.
    lock: threading.Lock = field(default_factory=threading.Lock)
    turn: itertools.count[int] = field(default_factory=itertools.count)


def _drain_grace(spec: FunctionSpec) -> float:
    """How long a retiring replica may take to finish its calls: its exec timeout, plus a margin."""
    return spec.exec_timeout + 5.0


class LocalBackend(Backend):
    kind: ClassVar[str] = "local"
    orchestration: ClassVar[str] = "local"

    def __init__(
        self,
        data_dir: Path,
        gateway_url: str = "http://127.0.0.1:8080",
        *,
        python: str = sys.executable,
        host: str = "127.0.0.1",
        start_timeout: float = 20.0,
        drain_delay: float = 1.0,
        watch_interval: float = 0.25,
        gateway_ca: str = "",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.gateway_url = gateway_url
        self.gateway_ca = gateway_ca
        self.python = python
        self.host = host
        self.start_timeout = start_timeout
        self.drain_delay = drain_delay
        self.watch_interval = watch_interval
        self._functions: dict[str, _Function] = {}
        self._admin_lock = threading.Lock()  # deploy/delete: the set of names
        self._retiring: set[_Replica] = set()
        self._retiring_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._host_info = describe_host()
        self.secret_files = SecretFiles(self.data_dir / "secrets")

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def functions_dir(self) -> Path:
        return self.data_dir / "functions"

    def start(self) -> None:
        self.functions_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "run").mkdir(parents=True, exist_ok=True)
        for spec_file in sorted(self.functions_dir.glob("*/spec.json")):
            self._restore(spec_file)
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="local-backend-watch", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        if self._watcher:
            self._watcher.join(timeout=5)
        replicas: list[_Replica] = []
        for fn in list(self._functions.values()):
            replicas.extend(fn.replicas)
            fn.replicas = ()
        with self._retiring_lock:
            replicas.extend(self._retiring)
        _stop_all(replicas, grace=5.0)

    def _restore(self, spec_file: Path) -> None:
        try:
            saved = json.loads(spec_file.read_text())
            code_path = spec_file.parent / saved["code_file"]
            spec = FunctionSpec.from_json({**saved["spec"], "code": code_path.read_text()})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("cannot restore %s: %s", spec_file, exc)
            return
        fn = _Function(spec, saved["version"], code_path, saved["created_at"], saved["updated_at"])
        self._functions[spec.name] = fn
        try:
            fn.replicas = tuple(self._spawn(fn.spec, fn.code_path, fn.version) for _ in range(spec.replicas))
        except DeployError as exc:
            # The watcher keeps trying; the function stays listed with 0 ready replicas.
            log.error("restoring %s: %s", spec.name, exc)

    # -- the Backend interface ---------------------------------------------------------------

    def deploy(self, spec: FunctionSpec) -> FunctionStatus:
        self._check(spec)
        with self._admin_lock:
            if spec.name in self._functions:
                raise FunctionExists(spec.name)
            now = time.time()
            code_path = self._write_code(spec, 1)
            try:
                replicas = tuple(self._spawn(spec, code_path, 1) for _ in range(spec.replicas))
            except DeployError:
                code_path.unlink(missing_ok=True)
                raise
            fn = _Function(spec, 1, code_path, created_at=now, updated_at=now, replicas=replicas)
            self._save(fn)
            self._functions[spec.name] = fn
            log.info("deployed %s (%d replicas)", spec.name, len(replicas))
            return self._status(fn)

    def update(self, spec: FunctionSpec) -> FunctionStatus:
        self._check(spec)
        fn = self._function(spec.name)
        with fn.lock:
            version = fn.version + 1
            code_path = self._write_code(spec, version)
            new: list[_Replica] = []
            try:
                for _ in range(spec.replicas):
                    new.append(self._spawn(spec, code_path, version))
            except DeployError:
                # The old version never stopped serving; throw the half-started new one away.
                _stop_all(new, grace=1.0)
                code_path.unlink(missing_ok=True)
                raise
            old, old_code = fn.replicas, fn.code_path
            fn.replicas = tuple(new)  # the switch: every endpoint() from here on is the new version
            fn.spec, fn.version, fn.code_path, fn.updated_at = spec, version, code_path, time.time()
            fn.backoff, fn.restart_after = 0.5, 0.0
            self._save(fn)
            self._retire(old, old_code, _drain_grace(fn.spec))
            log.info("updated %s to version %d", spec.name, version)
            return self._status(fn)

    def delete(self, name: str) -> None:
        with self._admin_lock:
            fn = self._functions.pop(name, None)
            if fn is None:
                raise FunctionNotFound(name)
            with fn.lock:
                old, fn.replicas = fn.replicas, ()
                (self.functions_dir / name / "spec.json").unlink(missing_ok=True)
                self._retire(old, fn.code_path, _drain_grace(fn.spec))
        log.info("deleted %s", name)

    def get(self, name: str) -> FunctionStatus:
        return self._status(self._function(name))

    def list(self) -> list[FunctionStatus]:
        return [self._status(fn) for fn in sorted(self._functions.values(), key=lambda f: f.spec.name)]

    def scale(self, name: str, replicas: int) -> FunctionStatus:
        if replicas < 0:
            raise ValueError("replicas cannot be negative")
        fn = self._function(name)
        with fn.lock:
            current = [r for r in fn.replicas if r.alive()]
            if replicas > len(current):
                added = [
                    self._spawn(fn.spec, fn.code_path, fn.version) for _ in range(replicas - len(current))
                ]
                fn.replicas = tuple(current + added)
            elif replicas < len(current):
                fn.replicas = tuple(current[:replicas])
                self._retire(tuple(current[replicas:]), None, _drain_grace(fn.spec))
            fn.spec = fn.spec.with_replicas(replicas)
            fn.updated_at = time.time()
            self._save(fn)
            return self._status(fn)

    def endpoint(self, name: str) -> str:
        fn = self._functions.get(name)
        if fn is None:
            raise FunctionNotFound(name)
        replicas = [r for r in fn.replicas if r.alive()]
        if not replicas:
            if fn.spec.replicas == 0:
                raise FunctionUnavailable(f"function {name!r} is scaled to zero", scaled_to_zero=True)
            raise FunctionUnavailable(f"function {name!r} has no ready replica: it is (re)starting")
        return replicas[next(fn.turn) % len(replicas)].url

    def nodes(self) -> list[NodeInfo]:
        info = describe_host()
        placed = tuple(
            sorted(name for name, fn in self._functions.items() if any(r.alive() for r in fn.replicas))
        )
        return [
            NodeInfo(
                name=info["name"],
                profile=info["profile"],
                arch=info["arch"],
                os=info["os"],
                ready=True,
                cpu=info["cpu"],
                memory=info["memory"],
                gpus=tuple(info["gpus"]),
                labels=self._node_labels(),
                functions=placed,
            )
        ]

    def logs(
        self, name: str, tail: int = 0, since: float | None = None, instance: str | None = None
    ) -> list[LogLine]:
        self._function(name)
        path = self.functions_dir / name / LOG_FILE
        if not path.exists():
            return []
        with path.open(errors="replace") as handle:
            lines = [_log_line(text) for text in handle]
        return select_lines(lines, tail, since, instance)

    def namespaces(self) -> list[str]:
        return ["local"]

    def list_secrets(self) -> list[str]:
        return self.secret_files.names()

    def create_secret(self, name: str, value: bytes) -> None:
        self.secret_files.create(name, value)

    def update_secret(self, name: str, value: bytes) -> None:
        self.secret_files.update(name, value)

    def delete_secret(self, name: str) -> None:
        self.secret_files.delete(name)

    # -- internals ---------------------------------------------------------------------------

    def _function(self, name: str) -> _Function:
        fn = self._functions.get(name)
        if fn is None:
            raise FunctionNotFound(name)
        return fn

    def _node_labels(self) -> dict[str, str]:
        return {
            HOSTNAME_LABEL: self._host_info["name"],
            ARCH_LABEL: self._host_info["arch"],
            PROFILE_LABEL: self._host_info["profile"],
        }

    def _check(self, spec: FunctionSpec) -> None:
        if spec.code is None:
            raise Unsupported(
                "the local backend runs functions from source (code); an image needs kubernetes"
            )
        missing = [name for name in spec.secrets if not self.secret_files.exists(name)]
        if missing:
            raise DeployError(
                f"secrets: no secret named {', '.join(missing)} (POST /system/secrets makes one)"
            )
        labels = self._node_labels()
        for constraint in spec.parsed_constraints:
            if not constraint.matches(labels):
                shown = ", ".join(f"{k}={v}" for k, v in labels.items())
                raise DeployError(f"no node satisfies constraint {constraint}: this node has {shown}")

    def _status(self, fn: _Function) -> FunctionStatus:
        ready = sum(1 for r in fn.replicas if r.alive())
        return FunctionStatus(
            spec=fn.spec,
            available_replicas=ready,
            created_at=fn.created_at,
            updated_at=fn.updated_at,
            version=fn.version,
            nodes=(self._host_info["name"],) if ready else (),
            restarts=fn.restarts,
        )

    def _write_code(self, spec: FunctionSpec, version: int) -> Path:
        folder = self.functions_dir / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        # A unique name per version: a retiring replica's file is never overwritten under it.
        path = folder / f"handler-v{version}-{uuid.uuid4().hex[:8]}.py"
        path.write_text(spec.code or "")
        return path

    def _save(self, fn: _Function) -> None:
        folder = self.functions_dir / fn.spec.name
        saved = {
            "spec": fn.spec.to_json(include_code=False),
            "code_file": fn.code_path.name,
            "version": fn.version,
            "created_at": fn.created_at,
            "updated_at": fn.updated_at,
        }
        tmp = folder / "spec.json.tmp"
        tmp.write_text(json.dumps(saved, indent=2) + "\n")
        os.replace(tmp, folder / "spec.json")

    def _spawn(self, spec: FunctionSpec, code_path: Path, version: int) -> _Replica:
        """Start one replica and return once it answers /_/ready; DeployError if it does not."""
        run_dir = self.data_dir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        port_file = run_dir / f"{spec.name}-{uuid.uuid4().hex[:12]}.port"
        package_root = str(Path(edgefaas.__file__).resolve().parent.parent)
        env = {
            **{k: v for k, v in os.environ.items() if k in _INHERITED_ENV or k.startswith("LC_")},
            **spec.env_vars,
            "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            "EDGEFAAS_GATEWAY_URL": self.gateway_url,
            "EDGEFAAS_FUNCTION_NAME": spec.name,
            **({"EDGEFAAS_GATEWAY_CA": self.gateway_ca} if self.gateway_ca else {}),
        }
        if spec.secrets:
            # Its own secrets only, where the runtime's context.secret() looks for them.
            folder = self.functions_dir / spec.name / "secrets"
            self.secret_files.link_into(folder, spec.secrets)
            env[SECRETS_DIR_ENV] = str(folder)
        command = [
            self.python, "-m", "edgefaas.runtime",
            "--code", str(code_path),
            "--name", spec.name,
            "--host", self.host,
            "--port", "0",
            "--port-file", str(port_file),
            "--exit-with-parent",
        ]  # fmt: skip
        log_path = self.functions_dir / spec.name / LOG_FILE
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=code_path.parent,
            start_new_session=True,  # a Ctrl-C at the gateway's terminal is the gateway's to handle
        )
        assert process.stdout is not None
        instance = f"{spec.name}-{process.pid}"
        threading.Thread(
            target=_keep_log, args=(process.stdout, log_path, instance), name=f"log-{instance}", daemon=True
        ).start()
        try:
            port = self._await_port(process, port_file, log_path)
            url = f"http://{self.host}:{port}"
            self._await_ready(process, url, log_path)
        except DeployError:
            _stop_all([_Replica(process, "", version)], grace=1.0)
            raise
        finally:
            port_file.unlink(missing_ok=True)
        log.info("%s v%d: pid %d on %s", spec.name, version, process.pid, url)
        return _Replica(process, url, version)

    def _await_port(self, process: subprocess.Popen[bytes], port_file: Path, log_path: Path) -> int:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DeployError(f"the function exited with status {process.returncode} while starting: "
                                  f"{_tail(log_path)}")  # fmt: skip
            with contextlib.suppress(OSError, ValueError):
                return int(port_file.read_text())
            time.sleep(0.01)
        raise DeployError(f"the function did not listen within {self.start_timeout:g}s: {_tail(log_path)}")

    def _await_ready(self, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DeployError(f"the function exited with status {process.returncode}: {_tail(log_path)}")
            try:
                with _NO_PROXY.open(url + READY_PATH, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.02)
        raise DeployError(f"the function was not ready within {self.start_timeout:g}s")

    def _retire(self, replicas: tuple[_Replica, ...], code_path: Path | None, grace: float) -> None:
        """Drain replicas that no longer receive calls, then remove their code file."""
        if not replicas and code_path is None:
            return
        with self._retiring_lock:
            self._retiring.update(replicas)

        def drain() -> None:
            # Calls routed just before the switch may still be on their way: let them land.
            time.sleep(self.drain_delay)
            _stop_all(list(replicas), grace=grace)
            with self._retiring_lock:
                self._retiring.difference_update(replicas)
            if code_path is not None:
                code_path.unlink(missing_ok=True)

        threading.Thread(target=drain, name="local-backend-drain", daemon=True).start()

    def _watch(self) -> None:
        """Restart dead replicas, with a backoff that grows while they keep dying young."""
        while not self._stop.wait(self.watch_interval):
            for fn in list(self._functions.values()):
                if not fn.lock.acquire(blocking=False):
                    continue  # a rollout or scale is busy with it; look again next round
                try:
                    self._heal(fn)
                except Exception:  # the watcher must survive anything one function does
                    log.exception("watching %s", fn.spec.name)
                finally:
                    fn.lock.release()

    def _heal(self, fn: _Function) -> None:
        alive = tuple(r for r in fn.replicas if r.alive())
        for dead in set(fn.replicas) - set(alive):
            log.warning(
                "%s: pid %d exited with status %s", fn.spec.name, dead.process.pid, dead.process.returncode
            )
            if time.monotonic() - dead.started > 30:
                fn.backoff = 0.5  # it ran a good while: this is not a crash loop
        if len(alive) != len(fn.replicas):
            fn.replicas = alive
            fn.restart_after = time.monotonic() + fn.backoff
        missing = fn.spec.replicas - len(fn.replicas)
        if missing <= 0 or self._stop.is_set() or time.monotonic() < fn.restart_after:
            return
        try:
            fn.replicas = (*fn.replicas, self._spawn(fn.spec, fn.code_path, fn.version))
            fn.restarts += 1
            log.info("%s: restarted (restart %d)", fn.spec.name, fn.restarts)
        except DeployError as exc:
            log.error("%s: restart failed: %s", fn.spec.name, exc)
            fn.backoff = min(fn.backoff * 2, _MAX_RESTART_BACKOFF)
            fn.restart_after = time.monotonic() + fn.backoff


def _stop_all(replicas: list[_Replica], grace: float) -> None:
    """SIGTERM every replica (the runtime drains), then SIGKILL what is left after ``grace``."""
    for replica in replicas:
        if replica.alive():
            with contextlib.suppress(ProcessLookupError):
                replica.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for replica in replicas:
        try:
            replica.process.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            log.warning("pid %d did not drain within %.0fs: killing it", replica.process.pid, grace)
            with contextlib.suppress(ProcessLookupError):
                replica.process.kill()
            replica.process.wait()


def _keep_log(stream: IO[bytes], path: Path, instance: str) -> None:
    """Write each line a replica prints to the function's log, as JSON with its replica and time:
    what OpenFaaS's log messages carry, and what a log request selects by."""
    with stream, path.open("a", encoding="utf-8") as log_file:
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", errors="replace").rstrip("\n")
            log_file.write(json.dumps({"t": time.time(), "i": instance, "x": text}) + "\n")
            log_file.flush()  # one line, one write: replicas share the file (O_APPEND)


def _log_line(text: str) -> LogLine:
    try:
        entry = json.loads(text)
        return LogLine(str(entry["i"]), float(entry["t"]), str(entry["x"]))
    except (ValueError, KeyError, TypeError):
        # A line written before lines were kept as JSON: its time and replica are unknown.
        return LogLine("", 0.0, text.rstrip("\n"))


def _tail(path: Path, lines: int = 8) -> str:
    try:
        with path.open(errors="replace") as handle:
            last = [_log_line(text).text.strip() for text in deque(handle, maxlen=lines)]
    except OSError:
        return "(no log)"
    return " | ".join(text for text in last if text)
