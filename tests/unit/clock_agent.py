"""A node's authentication agent as a process of its own, for running under a moved clock.

`python -m tests.unit.clock_agent SERVER_URL NODE SECRET STATE_DIR CA_PEM`: enrolls with the
server (the real enrollment, checking the server's answer by this process's clock), serves
the agent on a free loopback port, prints that port, and answers until killed. Its Parsec
is the tests' in-process stand-in; everything else is the production code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgefaas.nodeauth.agent import Agent, serve
from edgefaas.nodeauth.certificates import NODE_KEY
from edgefaas.nodeauth.enrollment import CERTIFICATE_FILE, enroll
from edgefaas.nodeauth.tls import client_context

from .parsec_fakes import FakeParsecWithRsa


def main(server_url: str, node: str, secret: str, state_dir: str, ca_pem: str) -> None:
    parsec, state = FakeParsecWithRsa(), Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    enroll(parsec, server_url, node, secret, state, client_context(Path(ca_pem)))
    server = serve(Agent(parsec, state / CERTIFICATE_FILE, ("127.0.0.1",), NODE_KEY), "127.0.0.1", 0)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:6])
