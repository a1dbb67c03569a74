"""A steady load from the WAN client: run by the `wan` lab device's own python3, standard library only.

    ip netns exec wanclient python3 wan_load.py < config.json

The configuration (JSON on standard input, so the license token stays out of the process
list): url (the API's anycast base URL), function, token, threads, timeout (seconds per
request), retry_delay, stop_file, progress_file, limit_s, probe_interval, and ca_pem (the
blueprint's CA, which an https url is verified by).

Each thread calls POST <url>/function/<function> with a fresh X-Call-Id key, over a new
connection each time (an anycast address may move between switches between two calls). A
call that fails (no answer, or not 200) is tried once more with the same key after
`retry_delay` seconds: long enough for the WAN to have moved the anycast away from a dead
gateway, so only a call that was running on it when it died can fail twice. A probe thread
asks <url>/healthz every `probe_interval` s and records each stretch without an answer.

It runs until `stop_file` exists (or `limit_s` passes), writes its counts to `progress_file`
every half second, and prints one JSON object at the end.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse
import uuid


class Load:
    def __init__(self, config: dict) -> None:
        self.config = config
        parts = urllib.parse.urlsplit(config["url"])
        self.tls = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port or (443 if self.tls else 80)
        self.context = ssl.create_default_context(cadata=config["ca_pem"]) if self.tls else None
        self.path = f"/function/{config['function']}"
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts = {
            "calls": 0,
            "succeeded": 0,
            "failed": 0,
            "retried": 0,
            "retried_ok": 0,
            "replayed": 0,
        }
        self.failures: list[dict] = []
        # The first tries that failed of calls whose retry succeeded (what went wrong, and when).
        self.first_failures: list[dict] = []
        self.outages: list[float] = []
        self.probe_failures = 0

    def request(self, method: str, path: str, headers: dict, body: bytes | None) -> tuple[int, dict, bytes]:
        timeout = self.config["timeout"]
        connection = (
            http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.context)
            if self.tls
            else http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        )
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        finally:
            connection.close()

    def call(self, key: str) -> tuple[bool, str, bool]:
        """(succeeded, what happened, replayed)"""
        headers = {
            "Authorization": f"Bearer {self.config['token']}",
            "Content-Type": "application/json",
            "X-Call-Id": key,
        }
        try:
            status, answer_headers, body = self.request("POST", self.path, headers, b'{"message": "wan"}')
        except (OSError, http.client.HTTPException) as exc:
            return False, f"{type(exc).__name__}: {exc}", False
        if status != 200:
            return False, f"{status} {body[:160].decode(errors='replace')}", False
        if answer_headers.get("x-call-id") != key:
            return False, f"200 with X-Call-Id {answer_headers.get('x-call-id')!r}, not the key", False
        return True, "200", answer_headers.get("x-idempotent-replay") == "true"

    def worker(self) -> None:
        while not self.stop.is_set():
            key = uuid.uuid4().hex
            ok, first, replayed = self.call(key)
            again = ""
            retried = not ok
            if retried:
                # The retry is made even while stopping: every key ends succeeded or failed.
                time.sleep(self.config["retry_delay"])
                ok, again, replayed = self.call(key)
            with self.lock:
                self.counts["calls"] += 1
                self.counts["succeeded" if ok else "failed"] += 1
                self.counts["retried"] += retried
                self.counts["retried_ok"] += retried and ok
                self.counts["replayed"] += replayed
                if not ok:
                    self.failures.append({"key": key, "first": first, "retry": again, "at": time.time()})
                elif retried and len(self.first_failures) < 50:
                    self.first_failures.append({"key": key, "first": first, "at": time.time()})

    def probe(self) -> None:
        last_ok = time.monotonic()
        failing = False
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                status, _headers, _body = self.request("GET", "/healthz", {}, None)
                ok = status == 200
            except (OSError, http.client.HTTPException):
                ok = False
            now = time.monotonic()
            if ok:
                if failing:
                    self.outages.append(now - last_ok)
                failing, last_ok = False, now
            else:
                self.probe_failures += 1
                failing = True
            time.sleep(max(0.0, self.config["probe_interval"] - (time.monotonic() - started)))

    def progress(self) -> None:
        path = self.config["progress_file"]
        with self.lock:
            text = json.dumps(self.counts)
        with open(path + ".new", "w") as out:
            out.write(text)
        os.replace(path + ".new", path)

    def run(self) -> dict:
        started = time.monotonic()
        threads = [threading.Thread(target=self.worker) for _ in range(self.config["threads"])]
        threads.append(threading.Thread(target=self.probe))
        for thread in threads:
            thread.start()
        while not os.path.exists(self.config["stop_file"]):
            if time.monotonic() - started > self.config["limit_s"]:
                break
            self.progress()
            time.sleep(0.5)
        self.stop.set()
        for thread in threads:
            thread.join()
        self.progress()
        return {
            **self.counts,
            "threads": self.config["threads"],
            "seconds": round(time.monotonic() - started, 3),
            "failures": self.failures,
            "first_failures": self.first_failures,
            "outages": [round(s, 3) for s in self.outages],
            "probe_failures": self.probe_failures,
        }


def main() -> None:
    config = {"timeout": 10.0, "retry_delay": 4.0, "probe_interval": 0.05, "limit_s": 300.0}
    config.update(json.load(sys.stdin))
    print(json.dumps(Load(config).run()))


if __name__ == "__main__":
    main()
