"""Options shared by every suite."""

import os


def pytest_addoption(parser):
    parser.addoption(
        "--inventory",
        default=os.environ.get("EDGEFAAS_INVENTORY", "inventories/lab.py"),
        help="pyinfra inventory the lab/perf suites address devices through (default: the virtual lab)",
    )
    parser.addoption(
        "--site",
        default=os.environ.get("EDGEFAAS_SITE"),
        help="the inventory's site the lab suites verify (edgefaas.deploy.sites; default: the site of "
        "the first K3S server). The sites suite (test_sites.py) sees every site.",
    )
