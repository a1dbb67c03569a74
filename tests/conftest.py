"""Options shared by every suite."""

import os


def pytest_addoption(parser):
    parser.addoption(
        "--inventory",
        default=os.environ.get("EDGEFAAS_INVENTORY", "inventories/lab.py"),
        help="pyinfra inventory the lab/perf suites address devices through (default: the virtual lab)",
    )
