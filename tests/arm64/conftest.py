"""arm64 artifacts, checked under emulation on the machine that built them.

Every test here is marked `arm64`: `pytest -m arm64 tests/arm64` after
`edgefaas lab build --arch arm64 ...`; CI's `pytest -m unit` leaves them out.
"""

from pathlib import Path

import pytest

from tests.arm64 import support

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(item.fspath).is_relative_to(HERE):
            item.add_marker(pytest.mark.arm64)


@pytest.fixture(scope="session")
def arm64_artifact():
    """The recorded arm64 build of an artifact, checked against its sha256; a missing one
    fails (these tests run only where the arm64 builds are meant to exist), naming the build."""
    from edgefaas.lab import artifacts

    def find(name: str, builder: str) -> Path:
        build = f"edgefaas lab build --arch arm64 {builder}"
        entry = artifacts.lookup(name, "arm64")
        if entry is None:
            pytest.fail(f"no arm64 {name} in {artifacts.manifest_path()}: run `{build}`", pytrace=False)
        path = Path(entry.path)
        if not path.is_file():
            pytest.fail(f"arm64 {name} recorded at {path}, which is gone: run `{build}`", pytrace=False)
        assert artifacts.sha256_file(path) == entry.sha256, (
            f"{path} changed since it was recorded: run `{build}`"
        )
        return path

    return find


@pytest.fixture(scope="session")
def emulation():
    """arm64 programs runnable here (binfmt_misc, only for this session's tests)."""
    import os

    from edgefaas.lab import binfmt

    if os.geteuid() != 0:
        pytest.fail("the arm64 userland tests chroot into arm64 trees: run them as root", pytrace=False)
    with binfmt.emulation(f"tests:{os.getpid()}", "arm64"):
        yield


@pytest.fixture(scope="session")
def arm64_root(arm64_artifact, emulation, tmp_path_factory):
    """An arm64 userland to chroot into: the arm64 runtime image, unpacked."""
    import shutil

    home = tmp_path_factory.mktemp("arm64-root")
    root = home / "root"
    support.unpack_image(arm64_artifact("runtime-image", "runtime-image"), root)
    yield root
    # A gigabyte once the tests have installed into it: pytest's kept temp dirs must not hold it.
    shutil.rmtree(home)
