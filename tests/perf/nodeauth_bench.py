"""Edge-node certification figures, measured on the lab in one run.

    .venv/bin/python -m tests.perf.nodeauth_bench [--inventory inventories/lab.py] [--joins 10]
        [--tokens 200] [--json OUT]

What is measured:
1. Join to certified: a K3S agent (a Jetson, as in Demo 1) leaves the cluster and joins
   again --joins times; a watch on the node list from this machine timestamps the node's
   appearance and the appearance of its `edgefaas.io/certified` label. p50/p95 over the
   joins, next to the whole rejoin (K3S agent start to certified), which the label waits on.
2. One authentication: its wall time as the server measured it (/v1/status, the agent's
   HTTP round trip and both ends' Parsec work), next to the Parsec operations it is made
   of, each timed alone on the devices with throwaway keys: on the agent, encrypt to the
   server's RSA key and sign with the node key; on the server, decrypt. The ratio says how
   much of an authentication is Parsec.
3. License verification per call: on the SONiC switch, with a key made in its Parsec, a
   token's first verification (ES256 over the exported public key) and a repeated one
   (the verified-token cache), next to the p50 of a whole licensed call through the
   gateway from this machine, in the same run.

Figures are printed as tables and ratios; nothing is asserted. Exit status 1 only if the
benchmark broke. The joined device is left certified, as it was.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import threading
import time
from pathlib import Path

import httpx

from edgefaas.perf.stats import percentile
from tests.integration.conftest import connect
from tests.integration.support import certified_after_join, kubernetes_api, server_status

REPO = Path(__file__).resolve().parents[2]

PARSEC_OPS = """
import json, sys, time
from edgefaas.parsec.attributes import Hash, rsa_public_encrypt_key_attributes
from edgefaas.parsec.client import ParsecClient
side, rounds = sys.argv[1], int(sys.argv[2])
parsec = ParsecClient()
names = {k.name for k in parsec.list_keys()}
times = {}
def timed(name, call):
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    times[name] = sorted(samples)[len(samples) // 2] * 1000
try:
    parsec.generate_rsa_encrypt_key("bench-rsa", 2048, oaep_hash=Hash.SHA_256)
    public = parsec.export_public_key("bench-rsa", "raw")
    ciphertext = parsec.asymmetric_encrypt("bench-rsa", b"x" * 32)
    if side == "agent":
        parsec.import_key("bench-rsa-pub", rsa_public_encrypt_key_attributes(2048, Hash.SHA_256), public)
        parsec.generate_ecc_sign_key("bench-ecc")
        timed("list_keys", parsec.list_keys)
        timed("asymmetric_encrypt", lambda: parsec.asymmetric_encrypt("bench-rsa-pub", b"x" * 32))
        timed("sign_hash", lambda: parsec.sign_hash("bench-ecc", b"h" * 32))
    else:
        timed("asymmetric_decrypt", lambda: parsec.asymmetric_decrypt("bench-rsa", ciphertext))
finally:
    for key in ("bench-rsa", "bench-rsa-pub", "bench-ecc"):
        if key in {k.name for k in parsec.list_keys()}:
            parsec.destroy_key(key)
print(json.dumps(times))
"""

LICENSE_VERIFY = """
import json, sys, time
from edgefaas.gateway.licensing.tokens import ParsecSigner, make_token, read_token
from edgefaas.parsec.client import ParsecClient
count = int(sys.argv[1])
client = ParsecClient()
signer = ParsecSigner(client, key_name="bench-license")
try:
    tokens = [make_token(signer, f"lic-{i}") for i in range(count)]
    def per_call(tokens):
        start = time.perf_counter()
        for token in tokens:
            read_token(signer, token)
        return (time.perf_counter() - start) / len(tokens) * 1e6
    first = per_call(tokens)  # every token new to the cache: a full ES256 verification
    again = per_call(tokens)  # each seen before: the verified-token cache
    print(json.dumps({"first_us": first, "cached_us": again}))
finally:
    client.destroy_key("bench-license")
"""


class BenchError(Exception):
    pass


def watch_join(
    api, name: str, started: threading.Event, seen: dict[str, float], stop: threading.Event
) -> None:
    """Record (local clock) when `name` appears and when it carries the certified label."""
    from kubernetes import watch

    stream = watch.Watch()
    started.set()
    for event in stream.stream(api.list_node, field_selector=f"metadata.name={name}", timeout_seconds=120):
        node = event["object"]
        now = time.monotonic()
        if event["type"] == "ADDED":
            seen.setdefault("added", now)
        if (node.metadata.labels or {}).get("edgefaas.io/certified") == "true" and "added" in seen:
            seen.setdefault("certified", now)
        if "certified" in seen or stop.is_set():
            stream.stop()
            return


def measure_joins(inventory, joins: int) -> dict[str, list[float]]:
    server_host = inventory.get_group("k3s_server")[0]
    agents = inventory.get_group("k3s_agent")
    joiner_host = next((h for h in agents if "jetson" in h.groups), agents[0])
    server = connect(server_host.name, server_host.data, server_host.groups)
    joiner = connect(joiner_host.name, joiner_host.data, joiner_host.groups)
    api, _ = kubernetes_api(inventory)
    watched, stamped, whole = [], [], []
    for i in range(joins):
        seen: dict[str, float] = {}
        started, stop = threading.Event(), threading.Event()
        thread = threading.Thread(
            target=watch_join, args=(api, joiner.name, started, seen, stop), daemon=True
        )
        began = time.monotonic()
        rejoin_at = None
        try:
            joiner.host.check_output("systemctl stop k3s-agent")
            server.host.check_output(f"kubectl delete node {joiner.name} --ignore-not-found --timeout=60s")
            thread.start()
            started.wait(10)
            time.sleep(0.5)  # the watch is open before the node can appear
            rejoin_at = time.monotonic()
            joiner.host.check_output("systemctl start k3s-agent")
            stamped.append(certified_after_join(server, joiner.name))
            thread.join(30)
        finally:
            stop.set()
        if "added" not in seen or "certified" not in seen:
            raise BenchError(f"join {i + 1}: the watch saw {sorted(seen)} of {joiner.name}")
        watched.append(seen["certified"] - seen["added"])
        whole.append(seen["certified"] - (rejoin_at or began))
        print(f"  join {i + 1}/{joins}: certified {watched[-1]:.2f} s after it appeared", file=sys.stderr)
    return {"node": joiner.name, "watched_s": watched, "cluster_stamped_s": stamped, "rejoin_s": whole}


def run_script(device, script: str, *args: str) -> dict:
    python = f"{device.data.get('edgefaas_venv') or '/opt/edgefaas/venv'}/bin/python"
    out = device.host.check_output(f"{python} -c {shlex.quote(script)} {' '.join(map(shlex.quote, args))}")
    return json.loads(out.strip().splitlines()[-1])


def licensed_call_p50(inventory, calls: int) -> float:
    from edgefaas.perf.publish import PublishError, admin_password, gateway_target

    hosts = [(h.name, tuple(h.groups), h.data) for h in inventory]
    try:
        target = gateway_target(hosts)
        password = admin_password(target)
    except PublishError as exc:
        raise BenchError(f"{exc} (is the gateway deployed? deploys/edgefaas.py)") from None
    with httpx.Client(base_url=target.url, auth=("admin", password), timeout=30, trust_env=False) as admin:
        answer = admin.post("/system/licenses", json={"name": "nodeauth-bench", "plan": "standard"})
        if answer.status_code != 201:
            raise BenchError(f"issuing a license: {answer.status_code} {answer.text}")
        token, license_id = answer.json()["token"], answer.json()["id"]
        try:
            samples = []
            with httpx.Client(base_url=target.url, timeout=30, trust_env=False) as caller:
                headers = {"Authorization": f"Bearer {token}"}
                for _ in range(calls):
                    start = time.perf_counter()
                    reply = caller.post("/function/FuncC", content=b"{}", headers=headers)
                    samples.append(time.perf_counter() - start)
                    if reply.status_code != 200:
                        raise BenchError(f"FuncC through the gateway: {reply.status_code} {reply.text[:200]}")
        finally:
            admin.delete(f"/system/licenses/{license_id}")
    return percentile(samples, 50) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", default=str(REPO / "inventories" / "lab.py"))
    parser.add_argument("--joins", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30, help="timings of each Parsec operation")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from edgefaas.deploy.inventory import load_inventory

    inventory = load_inventory(args.inventory, cwd=str(REPO))
    server_host = inventory.get_group("k3s_server")[0]
    server = connect(server_host.name, server_host.data, server_host.groups)
    agent_host = next(h for h in inventory.get_group("k3s_agent"))
    agent = connect(agent_host.name, agent_host.data, agent_host.groups)
    try:
        print(f"1. {args.joins} joins ...", file=sys.stderr)
        joins = measure_joins(inventory, args.joins)
        print("2. one authentication and its Parsec operations ...", file=sys.stderr)
        status = server_status(server)
        agent_ops = run_script(agent, PARSEC_OPS, "agent", str(args.rounds))
        server_ops = run_script(server, PARSEC_OPS, "server", str(args.rounds))
        print("3. license verification ...", file=sys.stderr)
        verify = run_script(server, LICENSE_VERIFY, str(args.tokens))
        call_ms = licensed_call_p50(inventory, args.tokens)
    except BenchError as exc:
        sys.exit(f"nodeauth_bench: {exc}")

    watched = joins["watched_s"]
    parsec_ms = agent_ops["asymmetric_encrypt"] + agent_ops["sign_hash"] + agent_ops["list_keys"]
    parsec_ms += server_ops["asymmetric_decrypt"]
    auth_ms = status["auth_ms_p50"]
    figures = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "joins": joins,
        "join_to_certified_p50_s": percentile(watched, 50),
        "authentication_p50_ms": auth_ms,
        "parsec_ms": {**agent_ops, **server_ops},
        "license_verify_us": verify,
        "licensed_call_p50_ms": call_ms,
    }
    print(f"\nJoin to certified ({joins['node']}, {len(watched)} joins, watched from this machine)")
    p95 = percentile(watched, 95)
    print(f"  p50 {percentile(watched, 50):.2f} s   p95 {p95:.2f} s   (target <= 5 s)")
    print(f"  K3S agent start to certified: p50 {percentile(joins['rejoin_s'], 50):.2f} s")
    print("\nOne authentication (the server's measure, p50 over its recent reviews)")
    print(f"  {auth_ms:.1f} ms, of which Parsec operations (each timed alone, p50):")
    for name, ms in {**agent_ops, **server_ops}.items():
        print(f"    {name:<20} {ms:7.2f} ms")
    print(f"  4 Parsec operations: {parsec_ms:.1f} ms = {parsec_ms / auth_ms:.2f}x of the authentication")
    print("\nLicense verification per call (on the switch, real Parsec key)")
    print(f"  first sight {verify['first_us']:.0f} us, repeated {verify['cached_us']:.1f} us")
    print(f"  a licensed FuncC call through the gateway: p50 {call_ms:.2f} ms")
    print(
        f"  verification / call: {verify['first_us'] / 1000 / call_ms:.3f}x first, "
        f"{verify['cached_us'] / 1000 / call_ms:.4f}x repeated"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
