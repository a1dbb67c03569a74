"""pyinfra facts the deploys need that pyinfra does not ship."""

from __future__ import annotations

from pyinfra.api import FactBase


class WritableSysctls(FactBase[set[str]]):
    """The sysctl keys, of those asked about, that this host can set.

    Global kernel settings are read-only inside containers (the virtual lab's devices,
    and some vendor images run services the same way); those are left as the kernel
    has them instead of failing the deploy.
    """

    def command(self, keys: list[str]) -> str:
        tests = [f"if test -w /proc/sys/{key.replace('.', '/')}; then echo {key}; fi" for key in keys]
        return "; ".join([*tests, "true"])

    def process(self, output: list[str]) -> set[str]:
        return {line.strip() for line in output if line.strip()}
