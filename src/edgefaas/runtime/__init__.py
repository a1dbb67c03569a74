"""The EdgeFaaS function runtime: what runs inside every function pod or process.

It loads one Python file that defines ``handle(event, context)``, keeps it warm behind a
small HTTP server (OpenFaaS of-watchdog's "http" mode), and answers:

- ``/_/health`` (the process is up) and ``/_/ready`` (it takes calls: 429 at max in-flight,
  503 while draining);
- any other path: one call of ``handle``.

Only the standard library is used: the runtime is copied into a small container image.
Run it with ``python -m edgefaas.runtime --code handler.py --port 8080``.
"""

from .event import BadRequest, CallError, CallResult, Context, Event

__all__ = ["BadRequest", "CallError", "CallResult", "Context", "Event"]
