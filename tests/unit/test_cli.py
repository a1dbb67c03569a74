"""The `edgefaas` command itself: its version, and the shell completion its help describes."""

from importlib.metadata import version

import pytest
from click.testing import CliRunner

from edgefaas import cli

pytestmark = pytest.mark.unit


def test_version_is_the_installed_package_s():
    result = CliRunner().invoke(cli.main, ["--version"], prog_name="edgefaas")
    assert result.exit_code == 0
    assert result.output == f"edgefaas {version('edgefaas')}\n"


def test_bash_completion_script_is_printed_and_completes_subcommands():
    runner = CliRunner()
    script = runner.invoke(cli.main, [], prog_name="edgefaas", env={"_EDGEFAAS_COMPLETE": "bash_source"})
    assert script.exit_code == 0
    assert "_edgefaas_completion()" in script.output
    assert "-F _edgefaas_completion edgefaas" in script.output
    env = {"_EDGEFAAS_COMPLETE": "bash_complete", "COMP_WORDS": "edgefaas pe", "COMP_CWORD": "1"}
    words = runner.invoke(cli.main, [], prog_name="edgefaas", env=env)
    assert words.exit_code == 0
    assert words.output.splitlines() == ["plain,perf"]


def test_help_shows_how_to_turn_completion_on():
    result = CliRunner().invoke(cli.main, ["--help"])
    assert 'eval "$(_EDGEFAAS_COMPLETE=bash_source edgefaas)"' in result.output


# Not in the base install: a device or the runtime image has `edgefaas` without the gateway extra.
GATEWAY_EXTRA_MODULES = ("starlette", "uvicorn", "httpx", "jsonschema", "kubernetes", "psycopg", "nats")


def test_every_subcommand_s_help_works_without_the_gateway_extra():
    import subprocess
    import sys

    blocker = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {GATEWAY_EXTRA_MODULES!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (blocked by the test)')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from edgefaas.cli import main\n"
        "main()\n"
    )
    for args in (["--help"], ["gateway", "--help"], ["nodeauth", "--help"], ["lab", "--help"]):
        done = subprocess.run(
            [sys.executable, "-c", blocker, *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, (
            f"edgefaas {' '.join(args)} without the gateway extra: {done.stderr[-800:]}"
        )
