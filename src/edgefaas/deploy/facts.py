"""pyinfra facts the deploys need that pyinfra does not ship."""

from __future__ import annotations

import shlex
from ipaddress import IPv4Interface

from pyinfra.api import FactBase

from edgefaas.deploy import nvidia, sonic


class WritableSysctls(FactBase[set[str]]):
    """The sysctl keys, of those asked about, that this host can set.

    Global kernel settings are read-only inside containers (the virtual lab's devices,
    and some vendor images run services the same way); those are left as the kernel
    has them instead of failing the deploy.
    """

    def command(self, keys: list[str]) -> str:
        tests = [f"if test -w /proc/sys/{key.replace('.', '/')}; then echo {key}; fi" for key in keys]
        return "; ".join([*tests, "true"])

    def process(self, output: list[str]) -> set[str]:
        return {line.strip() for line in output if line.strip()}


class Userland(FactBase[dict[str, str]]):
    """The device's OS release, kernel, systemd and glibc, for the supported-userland check.

    Plain POSIX shell: the oldest boards have nothing more to answer with.
    """

    command = (
        ". /etc/os-release 2>/dev/null; "
        'echo "id=${ID:-unknown}"; echo "version_id=${VERSION_ID:-}"; echo "pretty=${PRETTY_NAME:-}"; '
        'echo "kernel=$(uname -r)"; '
        'echo "systemd=$(systemctl --version 2>/dev/null | head -n 1)"; '
        'echo "glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null)"'
    )

    def process(self, output: list[str]) -> dict[str, str]:
        return dict(line.split("=", 1) for line in output if "=" in line)


class NvidiaContainerRuntime(FactBase[str | None]):
    """The nvidia-container-runtime K3S will give containerd as the `nvidia` handler, or None.

    The same places and order K3S itself checks at start (edgefaas.deploy.nvidia), not the
    PATH: a runtime K3S would not find is no runtime for the cluster.
    """

    command = f"ls -dp {' '.join(nvidia.RUNTIME_PATHS)} 2>/dev/null; true"

    def process(self, output: list[str]) -> str | None:
        return nvidia.runtime_from_listing(output)


class NvidiaGpu(FactBase[bool]):
    """Whether the device has an NVIDIA GPU that containers and Triton can use."""

    command = "ls /dev/nvidia0 /dev/nvhost-ctrl-gpu 2>/dev/null | head -1; true"

    def process(self, output: list[str]) -> bool:
        return any(line.strip() for line in output)


class UnpackedArtifact(FactBase[str | None]):
    """The sha256 a complete unpack of an artifact into `home` recorded (`home`/.artifact-sha256,
    written last), or None; `binary` (relative to `home`) must be there too."""

    STAMP = ".artifact-sha256"

    def command(self, home: str, binary: str) -> str:
        return f"test -x {home}/{binary} && cat {home}/{self.STAMP} 2>/dev/null; true"

    def process(self, output: list[str]) -> str | None:
        return output[0].strip() if output and output[0].strip() else None


class K3sImage(FactBase[bool]):
    """Whether K3S's containerd already has an image (so importing it again is not needed)."""

    def command(self, socket: str, ref: str) -> str:
        return (
            f"crictl --runtime-endpoint unix://{socket} inspecti -q {shlex.quote(ref)} "
            ">/dev/null 2>&1 && echo present || echo missing"
        )

    def process(self, output: list[str]) -> bool:
        return bool(output) and output[0].strip() == "present"


class NodeCertificate(FactBase[bool]):
    """Whether this node holds a valid certificate from the server's CA for its Parsec key.

    Asked as the authentication agent's `user`, with `edgefaas nodeauth enroll --check`.
    """

    def command(
        self,
        user: str,
        venv: str,
        server_url: str,
        secret_file: str,
        node: str,
        state_dir: str,
        ca_file: str,
    ) -> str:
        enroll = (
            f"runuser -u {user} -- {venv}/bin/edgefaas nodeauth enroll --check "
            f"--server-url {shlex.quote(server_url)} --secret-file {secret_file} --node {shlex.quote(node)} "
            f"--state-dir {state_dir} --ca-file {shlex.quote(ca_file)}"
        )
        return f"id -u {user} >/dev/null 2>&1 && {enroll} 2>/dev/null || echo needed"

    def process(self, output: list[str]) -> bool:
        return [line.strip() for line in output] == ["valid"]


class ServerCertificate(FactBase[str]):
    """ "current", or why a service's TLS certificate (the gateway's, the registry's) must be
    (re)issued for `names`.

    Asked as the service's `user` with `edgefaas gateway certificate --check`, which reads the
    files alone (no server is asked): "no certificate yet" before the first deploy.
    """

    def command(self, user: str, venv: str, names: list[str], cert: str, key: str, ca_file: str) -> str:
        flags = " ".join(f"--name {shlex.quote(name)}" for name in names)
        check = (
            f"runuser -u {user} -- {venv}/bin/edgefaas gateway certificate --check {flags} "
            f"--cert {cert} --key {key} --ca-file {shlex.quote(ca_file)}"
        )
        missing = "echo 'renew: no service account or CA yet'"
        return f"id -u {user} >/dev/null 2>&1 && {check} 2>/dev/null || {missing}"

    def process(self, output: list[str]) -> str:
        lines = [line.strip() for line in output if line.strip()]
        return lines[-1] if lines else "renew: no answer"


class RegistryHasImage(FactBase[bool]):
    """Whether the registry serves `reference` (skopeo inspect, verifying it by the CA in
    `cert_dir`, with the account in `authfile`); False before skopeo or the registry is there.

    `service`: the registry's unit on this host, asked only while it is active. A switch's
    control-plane ACL drops a port not opened yet without an answer, so asking a registry not
    started yet would wait out TCP's connect retries (about two minutes)."""

    def command(self, reference: str, cert_dir: str, authfile: str, service: str = "") -> str:
        inspect = (
            f"skopeo inspect --raw --cert-dir {shlex.quote(cert_dir)} --authfile {shlex.quote(authfile)} "
            f"docker://{shlex.quote(reference)}"
        )
        if service:
            inspect = f"systemctl is-active --quiet {shlex.quote(service)} && {inspect}"
        return f"if {inspect} >/dev/null 2>&1; then echo yes; else echo no; fi"

    def process(self, output: list[str]) -> bool:
        return [line.strip() for line in output if line.strip()] == ["yes"]


class TrustsServer(FactBase[bool]):
    """Whether the CA certificate in `ca_file` verifies the TLS server at `server_url` now."""

    def command(self, ca_file: str, server_url: str) -> str:
        check = f"curl -fsS -m 5 -o /dev/null --cacert {shlex.quote(ca_file)} {shlex.quote(server_url)}/v1/ca"
        return f"[ -f {shlex.quote(ca_file)} ] && {check} 2>/dev/null && echo trusted || echo untrusted"

    def process(self, output: list[str]) -> bool:
        return [line.strip() for line in output] == ["trusted"]


class OutOfDateFunctions(FactBase[list[str] | None]):
    """The functions of `wanted` (a --check manifest) the gateway at `url` lacks or runs
    differently, or None when it cannot tell (no gateway, or no `edgefaas` at that path yet).

    `edgefaas sync-functions --check`, as root with the admin password from the gateway's data
    directory: the password never leaves the host and is never on a command line.
    """

    def command(self, edgefaas: str, url: str, password_file: str, wanted: str, ca_file: str = "") -> str:
        verify = f"--ca-file {shlex.quote(ca_file)} " if ca_file else ""
        check = (
            f"printf %s {shlex.quote(wanted)} | {edgefaas} sync-functions --check {verify}"
            f"--url {shlex.quote(url)} --password-file {password_file} --manifest - 2>/dev/null"
        )
        # Always exit 0: a fact whose command fails fails the host.
        return f'if test -x {edgefaas}; then {check}; echo "exit $?"; else echo "exit 2"; fi'

    def process(self, output: list[str]) -> list[str] | None:
        lines = [line.strip() for line in output if line.strip()]
        names = [line.split(":", 1)[0] for line in lines[:-1]]
        # 1 naming nothing is no answer: Python exits 1 on an unexpected error too.
        if lines[-1:] == ["exit 0"] or (lines[-1:] == ["exit 1"] and names):
            return names
        return None


class InterfaceAddresses(FactBase[dict[str, list[IPv4Interface]]]):
    """The device's IPv4 addresses per interface (iproute2's JSON), for the routing checks of
    deploys/sonic.py: a BGP neighbour must be in one of their subnets."""

    command = "ip -j -4 addr show"

    def process(self, output: list[str]) -> dict[str, list[IPv4Interface]]:
        return sonic.interface_addresses("\n".join(output))


class PostgresClusters(FactBase[list[str]]):
    """The versions of Debian's PostgreSQL clusters named `main` on this host ("15", ...)."""

    command = "ls -d /etc/postgresql/*/main 2>/dev/null | cut -d/ -f4; true"

    def process(self, output: list[str]) -> list[str]:
        return sorted(
            (line.strip() for line in output if line.strip()), key=lambda v: int(v) if v.isdigit() else 0
        )


class PostgresDatabase(FactBase[bool]):
    """Whether the PostgreSQL server here has role `user` and database `database` (False if not running)."""

    def command(self, database: str, user: str) -> str:
        query = (
            f"select (select count(*) from pg_roles where rolname = '{user}') + "
            f"(select count(*) from pg_database where datname = '{database}')"
        )
        return f"runuser -u postgres -- psql -XtAc {shlex.quote(query)} 2>/dev/null || echo 0"

    def process(self, output: list[str]) -> bool:
        return [line.strip() for line in output if line.strip()] == ["2"]


class KubeNamespaceLabel(FactBase[dict[str, str]]):
    """Namespaces that carry label `label`, with its value (empty while K3S cannot answer)."""

    @staticmethod
    def default() -> dict[str, str]:  # pyinfra's answer when the command prints nothing
        return {}

    def command(self, label: str) -> str:
        escaped = label.replace(".", "\\.")
        template = f'{{range .items[*]}}{{.metadata.name}}={{.metadata.labels.{escaped}}}{{"\\n"}}{{end}}'
        listing = f"kubectl get namespaces -l {shlex.quote(label)} -o jsonpath={shlex.quote(template)}"
        return f"{listing} 2>/dev/null || true"

    def process(self, output: list[str]) -> dict[str, str]:
        return dict(line.strip().split("=", 1) for line in output if "=" in line)


class AdmissionWebhookCurrent(FactBase[bool]):
    """Whether the cluster's webhook configuration is the one `edgefaas nodeauth admission-config`
    prints now (kubectl diff: exit 0 is no difference); False when the server cannot say.

    The configuration is taken first and diffed only if it came: on a first deploy this fact is
    read before the server or its CA exists, and `kubectl diff` of nothing says "no difference".
    """

    def command(self, venv: str, ca_file: str) -> str:
        return (
            f"config=$({venv}/bin/edgefaas nodeauth admission-config --ca-file {shlex.quote(ca_file)} "
            '2>/dev/null) && printf "%s\n" "$config" | kubectl diff -f - >/dev/null 2>&1 '
            "&& echo current || echo differs"
        )

    def process(self, output: list[str]) -> bool:
        return [line.strip() for line in output] == ["current"]


# K3S's single-server datastore (kine on SQLite): one row per revision of each key.
K3S_DATASTORE = "/var/lib/rancher/k3s/server/db/state.db"
PLAINTEXT_SECRETS_SQL = (
    "SELECT name FROM kine AS k WHERE name LIKE '/registry/secrets/%' AND deleted = 0 "
    "AND id = (SELECT MAX(id) FROM kine WHERE name = k.name) "
    "AND substr(CAST(value AS BLOB), 1, 8) != CAST('k8s:enc:' AS BLOB)"
)


class PlaintextSecrets(FactBase[list[str]]):
    """Secrets whose current revision the datastore holds unencrypted (written before K3S's
    secrets-encryption was on); empty where there is no datastore yet."""

    @staticmethod
    def default() -> list[str]:
        return []

    command = (
        f"[ -f {K3S_DATASTORE} ] && sqlite3 -readonly {K3S_DATASTORE} {shlex.quote(PLAINTEXT_SECRETS_SQL)} "
        "2>/dev/null; true"
    )

    def process(self, output: list[str]) -> list[str]:
        return [line.strip() for line in output if line.strip()]


class SameFile(FactBase[bool]):
    """Whether `copy` exists and holds the same bytes as `source` (false when either is missing)."""

    def command(self, source: str, copy: str) -> str:
        return f"cmp -s {shlex.quote(source)} {shlex.quote(copy)} && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return [line.strip() for line in output] == ["yes"]


class KubeTokenFile(FactBase[bool]):
    """Whether `path` holds the token of the service-account Secret `secret` in `namespace`.

    The token goes from kubectl to cmp through a pipe: it is never on a command line."""

    def command(self, namespace: str, secret: str, path: str) -> str:
        get = (
            f"kubectl -n {shlex.quote(namespace)} get secret {shlex.quote(secret)} "
            "-o 'jsonpath={.data.token}' 2>/dev/null"
        )
        same = f"printf '%s' \"$t\" | base64 -d | cmp -s - {shlex.quote(path)}"
        return f't=$({get}) && [ -n "$t" ] && {same} && echo yes || echo no'

    def process(self, output: list[str]) -> bool:
        return [line.strip() for line in output] == ["yes"]
