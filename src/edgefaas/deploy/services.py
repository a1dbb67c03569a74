"""A systemd service inside a pyinfra deploy: restarted when what it runs changed, else kept up.

Each task deploy (parsec, edgefaas, triton) runs one long-lived service the same way:
restart it (with a daemon-reload) only when its binary, unit or configuration changed in
this run, and otherwise just make sure it is enabled and running, so a re-run with
nothing new restarts nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from pyinfra.operations import systemd


def keep_running(service: str, what: str, restart_if: Callable[[], bool], because: str) -> None:
    """`what` runs as `service`; restarted when `restart_if()` (after `because`), else left running."""
    systemd.service(
        name=f"Run {what} (restarted after {because})",
        service=service,
        running=True,
        enabled=True,
        restarted=True,
        daemon_reload=True,
        _if=restart_if,
    )
    systemd.service(name=f"Keep {what} enabled and running", service=service, running=True, enabled=True)
