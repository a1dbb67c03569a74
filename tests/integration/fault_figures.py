"""The faults' figures: one line per fault in reports/faults-figures.txt, also printed.

Each fault's line replaces that fault's earlier line, so the gateway SIGKILL of the edgefaas
task and the faults task's own faults land in one file, whatever order they run in. The
README's "What we promise under faults" table is filled from a real run of this file.

    calls           distinct calls (X-Call-Id keys) made under the fault
    failed          attempts that got no 200: what a caller that does not retry would see fail
    lost            calls that, retried with their key, never got an answer (must be 0)
    billing_errors  |billed - succeeded| over the calls' functions (must be 0)
    recover_s       seconds from the fault until calls succeed again without failures
"""

from __future__ import annotations

from pathlib import Path

FIGURES = Path(__file__).resolve().parents[2] / "reports" / "faults-figures.txt"


def record(
    fault: str, calls: int, failed: int, lost: int, billing_errors: int, recover_s: float, detail: str = ""
) -> str:
    line = (
        f"{fault}: calls={calls} failed={failed} lost={lost} billing_errors={billing_errors} "
        f"recover_s={recover_s:.1f}" + (f" ({detail})" if detail else "")
    )
    FIGURES.parent.mkdir(exist_ok=True)
    kept = []
    if FIGURES.exists():
        kept = [old for old in FIGURES.read_text().splitlines() if not old.startswith(f"{fault}:")]
    FIGURES.write_text("".join(f"{old}\n" for old in [*kept, line]))
    print(line)
    return line
