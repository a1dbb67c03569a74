"""The deploys' templates, against what pyinfra's files.template does with its keyword arguments."""

from __future__ import annotations

import inspect
from pathlib import Path

import jinja2
import jinja2.meta
import pytest
from pyinfra.operations import files

pytestmark = pytest.mark.unit

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_no_template_reads_a_variable_files_template_takes_for_itself():
    # files.template(..., user=...) sets the file's owner and never reaches the template, so a
    # template reading {{ user }} fails on the device ("'user' is undefined").
    own = set(inspect.signature(files.template._inner).parameters) - {"kwargs"}
    assert {"user", "group", "mode", "src", "dest"} <= own
    env = jinja2.Environment()
    env.filters["json"] = str  # the project's own renderers add it; only the names matter here
    clashes = {}
    for path in sorted(TEMPLATES.rglob("*.j2")):
        used = jinja2.meta.find_undeclared_variables(env.parse(path.read_text()))
        if used & own:
            clashes[str(path.relative_to(TEMPLATES))] = sorted(used & own)
    assert not clashes, f"templates read variables files.template keeps for itself: {clashes}"
