"""The supported-userland check the platform deploy makes before it changes anything."""

from __future__ import annotations

import tarfile

from edgefaas.deploy import userland
from edgefaas.facts import Userland as UserlandFact

WHEELS = [
    "click-8.1.7-py3-none-any.whl",
    "pyyaml-6.0.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl",
    "gevent-26.9.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    "cryptography-46.0.1-cp311-abi3-manylinux_2_34_x86_64.manylinux_2_28_x86_64.whl",
    "tflite_runtime-2.14.0-cp311-cp311-manylinux_2_34_aarch64.whl",
    "charset_normalizer-3.5.3-cp311-cp311-manylinux1_x86_64.manylinux_2_5_x86_64.whl",
]
BOOKWORM = {
    "id": "debian",
    "version_id": "12",
    "pretty": "Debian GNU/Linux 12 (bookworm)",
    "glibc": "glibc 2.36",
    "python": "3.11.2",
}
JETPACK4 = {
    "id": "ubuntu",
    "version_id": "18.04",
    "pretty": "Ubuntu 18.04.6 LTS",
    "glibc": "glibc 2.27",
    "python": "3.6.9",
}


def test_the_wheelhouse_needs_its_newest_wheel_minimum():
    need = userland.wheelhouse_requirement(WHEELS)
    # tflite's only tag is 2.34; cryptography installs on 2.28 through its second tag.
    assert need.glibc == (2, 34) and need.glibc_from.startswith("tflite_runtime")
    assert need.python == (3, 11)


def test_pure_python_wheels_need_nothing():
    need = userland.wheelhouse_requirement(["click-8.1.7-py3-none-any.whl", "not-a-wheel.txt"])
    assert need.python is None and need.glibc == (2, 0)


def test_bookworm_is_supported():
    found = userland.from_fact(BOOKWORM)
    assert found.glibc == (2, 36) and found.python == (3, 11)
    assert userland.refusal("sonic-1", found, userland.wheelhouse_requirement(WHEELS)) is None


def test_jetpack4_is_refused_naming_the_device_and_what_it_lacks():
    message = userland.refusal(
        "jetson-1", userland.from_fact(JETPACK4), userland.wheelhouse_requirement(WHEELS)
    )
    assert message is not None and "\n" not in message
    assert message.startswith("jetson-1: Ubuntu 18.04.6 LTS (glibc 2.27, Python 3.6) is older")
    assert "Python 3.11" in message and "glibc >= 2.34" in message and "tflite_runtime" in message
    assert message.endswith("nothing was changed on it")


def test_a_device_without_python_is_refused():
    fact = {**BOOKWORM, "python": ""}
    message = userland.refusal("sonic-9", userland.from_fact(fact), userland.wheelhouse_requirement(WHEELS))
    assert message is not None and "Python none" in message


def test_the_fact_parses_its_own_output():
    lines = [
        "id=debian",
        "version_id=11",
        "pretty=Debian GNU/Linux 11 (bullseye)",
        "glibc=glibc 2.31",
        "python=3.9.2",
    ]
    found = userland.from_fact(UserlandFact().process(lines))
    assert (found.os_id, found.glibc, found.python) == ("debian", (2, 31), (3, 9))
    assert found.describe() == "Debian GNU/Linux 11 (bullseye) (glibc 2.31, Python 3.9)"


def test_wheel_names_come_from_the_tarball(tmp_path):
    tar_path = tmp_path / "wheelhouse.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name in WHEELS:
            (tmp_path / name).write_bytes(b"")
            tar.add(tmp_path / name, arcname=name)
    assert sorted(userland.wheel_names(str(tar_path))) == sorted(WHEELS)
