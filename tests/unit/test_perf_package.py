"""edgefaas.perf stands alone: its suites are its own modules, and what they need ships with it."""

from __future__ import annotations

import ast
import importlib.util
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

import edgefaas.perf
from edgefaas.perf.bench import repo_root
from edgefaas.perf.runner import SUITES, PerfOptions, suite_command

pytestmark = pytest.mark.unit

PERF = Path(edgefaas.perf.__file__).parent


def test_every_suite_runs_a_module_of_this_package(tmp_path):
    options = PerfOptions("inv.py", 15, 16, tmp_path, SUITES)
    for name in SUITES:
        command = suite_command(name, options, tmp_path)
        module = command[command.index("-m") + 1]
        assert module == f"edgefaas.perf.{name}"
        assert importlib.util.find_spec(module) is not None, module


def test_no_module_of_the_package_imports_from_tests():
    for path in PERF.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not [n for n in names if n == "tests" or n.startswith("tests.")], path


def test_the_parsec_baseline_s_sources_are_package_data():
    from edgefaas.perf.parsec import BASELINE_SOURCES, BASELINE_SRC

    pyproject = tomllib.loads((repo_root() / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["edgefaas.perf"]
    for name in BASELINE_SOURCES:
        source = BASELINE_SRC / name
        assert source.is_file(), source
        relative = source.relative_to(PERF).as_posix()
        assert any(fnmatch(relative, pattern) for pattern in globs), relative


def _third_party_imports(folder: Path) -> set[str]:
    import sys

    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name != "edgefaas"}


def test_the_perf_extra_declares_everything_the_package_imports():
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def names(requirements: list[str]) -> set[str]:
        declared = set()
        for text in requirements:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == "edgefaas":  # another extra of this project
                declared |= names([r for extra in requirement.extras for r in extras[extra]])
            else:
                declared.add(canonicalize_name(requirement.name))
        return declared

    declared = names(project["dependencies"]) | names(extras["perf"])
    # The console bench drives a browser; that is the browser extra's, named there.
    declared |= names(extras["browser"])
    providers = packages_distributions()
    for module in sorted(_third_party_imports(PERF)):
        assert {canonicalize_name(d) for d in providers.get(module, [])} & declared, module
