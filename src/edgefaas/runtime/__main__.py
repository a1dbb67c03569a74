"""``python -m edgefaas.runtime``: serve one function file over HTTP."""

import sys

from .server import main

sys.exit(main())
