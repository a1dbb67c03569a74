"""The supported-userland check the platform deploy makes before it changes anything."""

from __future__ import annotations

import subprocess

import pytest

from edgefaas.deploy import userland
from edgefaas.deploy.facts import Userland as UserlandFact

BOOKWORM = {
    "id": "debian",
    "version_id": "12",
    "pretty": "Debian GNU/Linux 12 (bookworm)",
    "kernel": "6.1.0-28-amd64",
    "systemd": "systemd 252 (252.39-1~deb12u1)",
    "glibc": "glibc 2.36",
}
JETPACK4 = {
    "id": "ubuntu",
    "version_id": "18.04",
    "pretty": "Ubuntu 18.04.6 LTS",
    "kernel": "4.9.253-tegra",
    "systemd": "systemd 237",
    "glibc": "glibc 2.27",
}
UBUNTU_1604 = {
    "id": "ubuntu",
    "version_id": "16.04",
    "pretty": "Ubuntu 16.04.7 LTS",
    "kernel": "4.4.38-tegra",
    "systemd": "systemd 229",
    "glibc": "glibc 2.23",
}
TRITON_GLIBC = (2, 35)


def test_bookworm_is_supported():
    found = userland.from_fact(BOOKWORM)
    assert (found.kernel, found.systemd, found.glibc) == ((6, 1), 252, (2, 36))
    assert userland.refusal("sonic-1", found) is None


def test_jetpack4_is_supported_whatever_its_python_and_glibc():
    # The services bring their own Python and C library; k3s and Parsec are static.
    assert userland.refusal("jetson-1", userland.from_fact(JETPACK4)) is None


def test_an_older_release_is_refused_naming_the_device_and_what_it_lacks():
    message = userland.refusal("jetson-9", userland.from_fact(UBUNTU_1604))
    assert message is not None and "\n" not in message
    assert message.startswith("jetson-9: Ubuntu 16.04.7 LTS (kernel 4.4, systemd 229, glibc 2.23) is older")
    assert "kernel >= 4.9" in message and "systemd >= 237" in message
    assert message.endswith("nothing was changed on it")


def test_a_device_without_systemd_is_refused():
    found = userland.from_fact({**BOOKWORM, "systemd": ""})
    message = userland.refusal("sonic-9", found)
    assert message is not None and "systemd none" in message and "systemd >= 237" in message
    assert "kernel" not in message.split("needs", 1)[1]


@pytest.mark.parametrize(("fact", "refused"), [(BOOKWORM, False), (JETPACK4, True)])
def test_triton_as_a_service_needs_the_glibc_of_its_wheel(fact, refused):
    message = userland.triton_service_refusal("jetson-1", userland.from_fact(fact), "2.51.0", TRITON_GLIBC)
    assert (message is not None) == refused
    if refused:
        assert "tritonserver 2.51.0" in message and "glibc >= 2.35" in message
        assert "triton_as_k3s_workload" in message


def test_the_fact_parses_what_its_command_prints_here():
    done = subprocess.run(["sh", "-c", UserlandFact.command], capture_output=True, text=True, check=True)
    found = userland.from_fact(UserlandFact().process(done.stdout.splitlines()))
    assert found.kernel is not None and found.kernel >= (3, 0)
    assert found.glibc is not None and found.glibc >= (2, 17)
    assert found.os_id != "unknown"


def test_the_fact_parses_a_bullseye_device():
    lines = [
        "id=debian",
        "version_id=11",
        "pretty=Debian GNU/Linux 11 (bullseye)",
        "kernel=6.1.0-28-amd64",
        "systemd=systemd 247 (247.3-7+deb11u6)",
        "glibc=glibc 2.31",
    ]
    found = userland.from_fact(UserlandFact().process(lines))
    assert (found.os_id, found.systemd, found.glibc) == ("debian", 247, (2, 31))
    assert found.describe() == "Debian GNU/Linux 11 (bullseye) (kernel 6.1, systemd 247, glibc 2.31)"
