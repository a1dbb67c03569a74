"""Many clients doing random operations against one Parsec service, every result checked.

The idea of upstream Parsec's stress test: one thread per client, each owning its keys,
doing random operations a few milliseconds apart, while a checker does round trips on a
shared key. Upstream checks correctness and records no latency; this reports both, and
counts a wrong result separately from a service error.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from dataclasses import dataclass, field

from edgefaas.perf.stats import percentile

from .client import ParsecClient
from .errors import ParsecError

OPERATIONS = ("sign-verify", "encrypt-decrypt", "hash", "random", "export", "list-keys")


@dataclass
class StressResult:
    clients: int
    operations: int = 0
    wrong: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile (q in 0..100) of the latencies; 0.0 when there are none."""
        return percentile(self.latencies_ms, q) if self.latencies_ms else 0.0


def _one_client(
    index: int,
    ops: int,
    endpoint: str | None,
    gap_ms: float,
    result: StressResult,
    lock: threading.Lock,
    seed: int,
) -> None:
    rng = random.Random(seed + index)
    client = ParsecClient(endpoint)
    prefix = f"stress-{os.getpid()}-{index}"
    sign_key, crypt_key = f"{prefix}-ecc", f"{prefix}-rsa"
    try:
        client.generate_ecc_sign_key(sign_key)
        client.generate_rsa_encrypt_key(crypt_key)
    except ParsecError as exc:
        with lock:
            result.errors += 1
            result.problems.append(f"client {index}: key generation: {exc}")
        return
    try:
        for _ in range(ops):
            op = rng.choice(OPERATIONS)
            data = rng.randbytes(rng.randint(1, 190))
            started = time.perf_counter()
            wrong = None
            try:
                if op == "sign-verify":
                    digest = hashlib.sha256(data).digest()
                    signature = client.sign_hash(sign_key, digest)
                    client.verify_hash(sign_key, digest, signature)
                elif op == "encrypt-decrypt":
                    if (
                        client.asymmetric_decrypt(crypt_key, client.asymmetric_encrypt(crypt_key, data))
                        != data
                    ):
                        wrong = "decrypt(encrypt(x)) != x"
                elif op == "hash":
                    if client.hash_compute(data) != hashlib.sha256(data).digest():
                        wrong = "hash_compute differs from hashlib"
                elif op == "random":
                    if len(client.generate_random(len(data))) != len(data):
                        wrong = "generate_random returned the wrong size"
                elif op == "export":
                    if not client.export_public_key(sign_key, format="der"):
                        wrong = "empty public key"
                elif {sign_key, crypt_key} - {k.name for k in client.list_keys()}:
                    wrong = "list_keys lost this client's keys"
            except ParsecError as exc:
                with lock:
                    result.errors += 1
                    result.problems.append(f"client {index}: {op}: {exc}")
                continue
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                result.operations += 1
                result.latencies_ms.append(elapsed)
                if wrong:
                    result.wrong += 1
                    result.problems.append(f"client {index}: {op}: {wrong}")
            if gap_ms:
                time.sleep(rng.uniform(0, gap_ms) / 1000)
    finally:
        for key in (sign_key, crypt_key):
            try:
                client.destroy_key(key)
            except ParsecError as exc:
                with lock:
                    result.problems.append(f"client {index}: destroy {key}: {exc}")


def run(
    clients: int = 8,
    ops: int = 250,
    endpoint: str | None = None,
    gap_ms: float = 4.0,
    seed: int | None = None,
) -> StressResult:
    """Run `clients` threads of `ops` random operations each; return what happened."""
    result = StressResult(clients=clients)
    lock = threading.Lock()
    seed = random.randrange(1 << 30) if seed is None else seed
    threads = [
        threading.Thread(target=_one_client, args=(i, ops, endpoint, gap_ms, result, lock, seed), daemon=True)
        for i in range(clients)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - started
    return result
