"""Whether this pyinfra run is a dry run (`pyinfra --dry`), in which planning must write nothing.

pyinfra keeps --dry inside its command-line entry point: neither its state nor its config
nor its host objects carry it, and deploy files run in greenlets that do not see the
command's click context. The command line itself is what tells.
"""

from __future__ import annotations

import sys

import pyinfra


def is_dry_run() -> bool:
    """True while the pyinfra command line plans a `--dry` run."""
    return bool(pyinfra.is_cli) and "--dry" in sys.argv[1:]
