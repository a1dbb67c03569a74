"""``edgefaas parsec ...``: talk to a Parsec service from the shell.

Meant for operators checking a device: is the service up, which provider and
authenticator does it use, which keys does this uid own, and does signing work.
Failures print one ``error: ...`` line and exit with status 1.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sys
from dataclasses import dataclass
from typing import Any, NoReturn

import click

from .attributes import HASHLIB_NAMES, Hash, signature_hash
from .client import ParsecClient
from .der import ecdsa_der_to_raw, ecdsa_raw_to_der
from .errors import InvalidArgument, ParsecError
from .wire import Opcode, Provider, enum_name


@dataclass(frozen=True)
class _Settings:
    endpoint: str | None
    app_name: str | None
    timeout: float

    def client(self) -> ParsecClient:
        return ParsecClient(self.endpoint, self.app_name, self.timeout)


class _ParsecGroup(click.Group):
    """Turns any ParsecError raised by a subcommand into one line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ParsecError as exc:
            _fail(str(exc))


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _client(ctx: click.Context) -> ParsecClient:
    settings = ctx.find_object(_Settings)
    assert settings is not None, "parsec subcommand run outside the parsec group"
    return settings.client()


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _table(rows: list[list[str]]) -> None:
    """Left-aligned columns; the last column is not padded."""
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@click.group(cls=_ParsecGroup)
@click.option(
    "--endpoint",
    default=None,
    help="Service endpoint, e.g. unix:/run/parsec/parsec.sock "
    "(default: $PARSEC_SERVICE_ENDPOINT, then that path).",
)
@click.option("--app-name", default=None, help="Application name, needed when the service uses Direct auth.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait per request.")
@click.pass_context
def parsec(ctx: click.Context, endpoint: str | None, app_name: str | None, timeout: float) -> None:
    """Talk to the Parsec security service: keys, signatures, service info."""
    ctx.obj = _Settings(endpoint, app_name, timeout)


@parsec.command()
@json_option
@click.pass_context
def ping(ctx: click.Context, as_json: bool) -> None:
    """Check the service answers; print its wire protocol version."""
    client = _client(ctx)
    major, minor = client.ping()
    if as_json:
        _emit_json({"endpoint": client.endpoint, "major": major, "minor": minor})
    else:
        click.echo(f"{client.endpoint}: wire protocol {major}.{minor}")


@parsec.command()
@json_option
@click.pass_context
def providers(ctx: click.Context, as_json: bool) -> None:
    """List providers; crypto operations go to the first one."""
    infos = _client(ctx).list_providers()
    if as_json:
        _emit_json([{**vars(p), "name": p.name} for p in infos])
        return
    rows = [["ID", "NAME", "VERSION", "VENDOR", "DESCRIPTION"]]
    rows += [[str(p.id), p.name, p.version, p.vendor, p.description] for p in infos]
    _table(rows)


@parsec.command()
@json_option
@click.pass_context
def authenticators(ctx: click.Context, as_json: bool) -> None:
    """List the service's authenticators (the first is the one in use)."""
    infos = _client(ctx).list_authenticators()
    if as_json:
        _emit_json([{**vars(a), "name": a.name} for a in infos])
        return
    rows = [["ID", "NAME", "VERSION", "DESCRIPTION"]]
    rows += [[str(a.id), a.name, a.version, a.description] for a in infos]
    _table(rows)


def _provider_id(value: str) -> int:
    if value.isdigit():
        return int(value)
    wanted = value.replace("-", "").replace("_", "").lower()
    for member in Provider:
        if member.name.replace("_", "").lower() == wanted:
            return int(member)
    raise click.BadParameter(f"unknown provider {value!r}")


@parsec.command()
@click.option("--provider", default=None, help="Provider id or name (default: the crypto one).")
@json_option
@click.pass_context
def opcodes(ctx: click.Context, provider: str | None, as_json: bool) -> None:
    """List the operations a provider implements."""
    codes = _client(ctx).list_opcodes(None if provider is None else _provider_id(provider))
    if as_json:
        _emit_json([{"opcode": c, "name": enum_name(Opcode, c)} for c in codes])
        return
    for code in codes:
        click.echo(f"{code:#04x}  {enum_name(Opcode, code)}")


@parsec.command()
@json_option
@click.pass_context
def keys(ctx: click.Context, as_json: bool) -> None:
    """List the keys this identity owns."""
    infos = _client(ctx).list_keys()
    if as_json:
        _emit_json(
            [
                {
                    "name": k.name,
                    "provider_id": k.provider_id,
                    "provider": enum_name(Provider, k.provider_id),
                    "type": k.key_type,
                    "bits": k.key_bits,
                    "algorithm": k.algorithm,
                    "usage": list(k.usage),
                }
                for k in infos
            ]
        )
        return
    if not infos:
        click.echo("no keys")
        return
    rows = [["NAME", "PROVIDER", "TYPE", "BITS", "ALGORITHM", "USAGE"]]
    rows += [
        [
            k.name,
            enum_name(Provider, k.provider_id),
            k.key_type,
            str(k.key_bits),
            k.algorithm,
            ",".join(k.usage),
        ]
        for k in infos
    ]
    _table(rows)


@parsec.command()
@json_option
@click.pass_context
def clients(ctx: click.Context, as_json: bool) -> None:
    """List identities that own keys (admin operation)."""
    names = _client(ctx).list_clients()
    if as_json:
        _emit_json(names)
    else:
        for name in names:
            click.echo(name)


KEY_TYPES = ("rsa-sign", "rsa-encrypt", "ecc-sign")


@parsec.command("generate-key")
@click.argument("name")
@click.option("--type", "key_type", type=click.Choice(KEY_TYPES), default="ecc-sign", show_default=True)
@click.option("--bits", type=int, default=None, help="Key size (default RSA 2048, ECC 256).")
@click.option("--oaep", is_flag=True, help="rsa-encrypt: RSA-OAEP with SHA-256, not PKCS#1 v1.5.")
@click.pass_context
def generate_key(ctx: click.Context, name: str, key_type: str, bits: int | None, oaep: bool) -> None:
    """Create key NAME in the service."""
    client = _client(ctx)
    if key_type == "rsa-sign":
        client.generate_rsa_sign_key(name, bits or 2048)
    elif key_type == "rsa-encrypt":
        client.generate_rsa_encrypt_key(name, bits or 2048, oaep_hash=Hash.SHA_256 if oaep else None)
    else:
        client.generate_ecc_sign_key(name, bits=bits or 256)
    click.echo(f"created {key_type} key {name!r}")


@parsec.command("destroy-key")
@click.argument("name")
@click.pass_context
def destroy_key(ctx: click.Context, name: str) -> None:
    """Destroy key NAME."""
    _client(ctx).destroy_key(name)
    click.echo(f"destroyed key {name!r}")


@parsec.command("export-public-key")
@click.argument("name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pem", "der", "pkcs1-pem", "raw"]),
    default="pem",
    show_default=True,
    help="pem/der: SubjectPublicKeyInfo (as parsec-tool prints); pkcs1-pem: RSA PUBLIC KEY; "
    "raw: as the service returns it.",
)
@click.option("--output", "-o", type=click.File("wb"), default=None, help="Write to a file.")
@click.pass_context
def export_public_key(ctx: click.Context, name: str, fmt: str, output: Any) -> None:
    """Print the public key of NAME."""
    data = _client(ctx).export_public_key(name, fmt)  # type: ignore[arg-type]
    if output is not None:
        output.write(data)
    elif fmt.endswith("pem"):
        click.echo(data.decode("ascii"), nl=False)
    else:
        click.get_binary_stream("stdout").write(data)


def _read_input(data: str | None, path: Any) -> bytes:
    if (data is None) == (path is None):
        raise click.UsageError("give either DATA or --file")
    return data.encode("utf-8") if data is not None else path.read()


@dataclass(frozen=True)
class _Signing:
    digest: bytes
    alg: Any  # Algorithm.AsymmetricSignature
    key_bits: int

    @property
    def is_ecdsa(self) -> bool:
        return self.alg.WhichOneof("variant") in ("ecdsa", "deterministic_ecdsa", "ecdsa_any")


def _prepare_signing(client: ParsecClient, name: str, message: bytes) -> _Signing:
    """Hash ``message`` locally with the hash the key's signing policy names."""
    info = client.key_info(name)
    policy = info.attributes.key_policy.key_algorithm
    if policy.WhichOneof("variant") != "asymmetric_signature":
        raise InvalidArgument(f"key {name!r} is not a signing key", endpoint=client.endpoint)
    alg = policy.asymmetric_signature
    hash_id = signature_hash(alg)
    if hash_id not in HASHLIB_NAMES:
        raise InvalidArgument(
            f"key {name!r} does not name a hash this command can compute", endpoint=client.endpoint
        )
    return _Signing(hashlib.new(HASHLIB_NAMES[hash_id], message).digest(), alg, info.key_bits)


@parsec.command()
@click.argument("name")
@click.argument("data", required=False)
@click.option("--file", "path", type=click.File("rb"), help="Sign this file ('-' for stdin).")
@click.option("--raw", is_flag=True, help="ECDSA: print r||s as the service returns it, not DER.")
@click.pass_context
def sign(ctx: click.Context, name: str, data: str | None, path: Any, raw: bool) -> None:
    """Hash DATA (or --file) with the key's hash and sign it; print base64.

    ECDSA signatures are printed DER-encoded, like parsec-tool and openssl.
    """
    client = _client(ctx)
    signing = _prepare_signing(client, name, _read_input(data, path))
    signature = client.sign_hash(name, signing.digest, signing.alg)
    if signing.is_ecdsa and not raw:
        signature = ecdsa_raw_to_der(signature)
    click.echo(base64.b64encode(signature).decode("ascii"))


@parsec.command()
@click.argument("name")
@click.argument("signature")
@click.argument("data", required=False)
@click.option("--file", "path", type=click.File("rb"), help="Verify over this file.")
@click.pass_context
def verify(ctx: click.Context, name: str, signature: str, data: str | None, path: Any) -> None:
    """Check a base64 SIGNATURE over DATA (or --file); exit 1 if it does not match.

    ECDSA signatures may be DER (as ``sign`` prints) or raw r||s.
    """
    try:
        decoded = base64.b64decode(signature, validate=True)
    except binascii.Error as exc:
        raise click.BadParameter(f"signature is not base64: {exc}") from exc
    client = _client(ctx)
    signing = _prepare_signing(client, name, _read_input(data, path))
    if signing.is_ecdsa and len(decoded) != 2 * ((signing.key_bits + 7) // 8):
        decoded = ecdsa_der_to_raw(decoded, signing.key_bits)
    client.verify_hash(name, signing.digest, decoded, signing.alg)
    click.echo("signature OK")


@parsec.command()
@click.argument("name")
@click.argument("data", required=False)
@click.option("--file", "path", type=click.File("rb"), help="Encrypt this file ('-' for stdin).")
@click.pass_context
def encrypt(ctx: click.Context, name: str, data: str | None, path: Any) -> None:
    """Encrypt DATA with key NAME's algorithm; print the ciphertext in base64 (as parsec-tool does)."""
    ciphertext = _client(ctx).asymmetric_encrypt(name, _read_input(data, path))
    click.echo(base64.b64encode(ciphertext).decode())


@parsec.command()
@click.argument("name")
@click.argument("ciphertext")
@click.pass_context
def decrypt(ctx: click.Context, name: str, ciphertext: str) -> None:
    """Decrypt base64 CIPHERTEXT with key NAME; print the plaintext."""
    try:
        raw = base64.b64decode(ciphertext, validate=True)
    except binascii.Error:
        _fail("CIPHERTEXT is not base64")
    sys.stdout.buffer.write(_client(ctx).asymmetric_decrypt(name, raw) + b"\n")


@parsec.command()
@click.option(
    "--clients", default=8, show_default=True, help="Concurrent clients (threads), each with its own keys."
)
@click.option("--ops", default=250, show_default=True, help="Random operations per client.")
@click.option(
    "--gap-ms", default=4.0, show_default=True, help="Up to this many ms between a client's operations."
)
@click.option("--seed", type=int, default=None, help="Random seed, to replay a run.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def stress(
    ctx: click.Context, clients: int, ops: int, gap_ms: float, seed: int | None, as_json: bool
) -> None:
    """Many clients doing random checked operations at once; exit 1 on any wrong result or error."""
    from . import stress as stress_mod

    settings = ctx.find_object(_Settings)
    result = stress_mod.run(clients, ops, settings.endpoint if settings else None, gap_ms, seed)
    summary = {
        "clients": result.clients,
        "operations": result.operations,
        "wrong": result.wrong,
        "errors": result.errors,
        "seconds": round(result.seconds, 2),
        "p50_ms": round(result.percentile(50), 2),
        "p99_ms": round(result.percentile(99), 2),
        "problems": result.problems[:20],
    }
    if as_json:
        _emit_json(summary)
    else:
        click.echo(
            f"{result.operations} operations by {clients} clients in {result.seconds:.1f} s: "
            f"{result.wrong} wrong, {result.errors} errors, "
            f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms"
        )
        for problem in summary["problems"]:
            click.echo(f"  {problem}")
    if result.wrong or result.errors:
        sys.exit(1)
