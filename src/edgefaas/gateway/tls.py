"""The gateway's HTTPS: its key and certificate files, reloaded in place when renewed.

The certificate comes from the blueprint's CA (`edgefaas gateway certificate`, which a timer
runs); the renewal replaces the file atomically and the running gateway picks it up within
RELOAD_SECONDS for new connections, without a restart that would cut calls in flight.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from pathlib import Path

import uvicorn

RELOAD_SECONDS = 60.0
log = logging.getLogger("edgefaas.gateway.tls")


def server_context(certificate: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context serving `certificate` with `key`; ValueError naming what is wrong."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certificate, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot serve HTTPS with {certificate} and {key}: {exc}") from None
    return context


class CertificateReloader:
    """Loads the certificate and key into `context` again whenever the certificate file changes."""

    def __init__(self, context: ssl.SSLContext, certificate: Path, key: Path) -> None:
        self.context, self.certificate, self.key = context, certificate, key
        self.stamp = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            info = self.certificate.stat()
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns

    def check(self) -> bool:
        """Reload if the certificate changed since the last load; whether it did."""
        stamp = self._stamp()
        if stamp is None or stamp == self.stamp:
            return False
        try:
            self.context.load_cert_chain(self.certificate, self.key)
        except (OSError, ssl.SSLError) as exc:  # half renewed: the served one stays, retried next time
            log.warning("cannot load the renewed certificate %s yet: %s", self.certificate, exc)
            return False
        self.stamp = stamp
        log.info("serving the renewed certificate %s", self.certificate)
        return True

    def run(self, stop: threading.Event, every_s: float = RELOAD_SECONDS) -> None:
        while not stop.wait(every_s):
            self.check()


class TlsServer(uvicorn.Server):
    """uvicorn's server, stopping as promptly on TLS as on plain HTTP.

    On SIGTERM uvicorn closes every idle connection and waits until all are gone. A TLS
    connection closed that way is only gone once the peer answers its close_notify, or after
    30 s (asyncio's and uvloop's SSL shutdown timeout): an idle keep-alive client never answers,
    so every stop would last 30 s and end in systemd's SIGKILL, cutting the calls in flight.
    A connection uvicorn has closed has sent all it will send: it is aborted instead of waited for.
    """

    async def shutdown(self, sockets: list | None = None) -> None:
        reaper = asyncio.create_task(self._abort_closed())
        try:
            await super().shutdown(sockets=sockets)
        finally:
            reaper.cancel()

    async def _abort_closed(self) -> None:
        while True:
            for connection in list(self.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None and transport.is_closing():
                    transport.abort()
            await asyncio.sleep(0.1)
