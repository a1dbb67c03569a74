"""Reading a function's source without running it: compile errors by line, docstring, schemas."""

import subprocess
import sys
from pathlib import Path

import pytest

from edgefaas.runtime.source import SourceError, inspect_source

pytestmark = pytest.mark.unit

GOOD = '''"""Adds two numbers."""

INPUT_SCHEMA = {"type": "object", "required": ["a", "b"]}
OUTPUT_SCHEMA: dict = {"type": "number"}


def handle(event, context):
    data = event.json()
    return data["a"] + data["b"]
'''


def test_docstring_and_schemas_are_read():
    found = inspect_source(GOOD)
    assert found.description == "Adds two numbers."
    assert found.input_schema == {"type": "object", "required": ["a", "b"]}
    assert found.output_schema == {"type": "number"}


def test_handler_docstring_is_the_fallback_description():
    found = inspect_source('def handle(event, context):\n    """Echoes."""\n    return event.body\n')
    assert found.description == "Echoes."
    assert found.input_schema is None and found.output_schema is None


def test_syntax_error_names_its_line():
    with pytest.raises(SourceError) as caught:
        inspect_source("def handle(event, context):\n    return 1\n\nx = (\n")
    assert caught.value.line == 4
    assert str(caught.value).startswith("line 4:")


def test_indentation_error_names_its_line():
    with pytest.raises(SourceError) as caught:
        inspect_source("def handle(event, context):\nreturn 1\n")
    assert caught.value.line == 2


def test_null_bytes_are_refused_without_a_line():
    with pytest.raises(SourceError, match="null"):
        inspect_source("def handle(e, c):\n    return 1\x00\n")


def test_a_file_without_handle_is_refused():
    with pytest.raises(SourceError, match=r"no handle\(event, context\)"):
        inspect_source("def main(event, context):\n    return 1\n")


def test_handle_must_take_event_and_context():
    with pytest.raises(SourceError) as caught:
        inspect_source("import os\n\ndef handle(event):\n    return 1\n")
    assert caught.value.line == 3


@pytest.mark.parametrize(
    "code",
    [
        "def handle(*args):\n    return 1\n",
        "async def handle(event, context):\n    return 1\n",
        "from somewhere import handle\n",
        "handle = lambda event, context: 1\n",
    ],
)
def test_other_ways_to_define_handle_are_accepted(code):
    inspect_source(code)


def test_a_schema_that_is_not_a_literal_dict_is_refused_with_its_line():
    with pytest.raises(SourceError) as caught:
        inspect_source("import json\nINPUT_SCHEMA = json.loads('{}')\ndef handle(e, c):\n    return 1\n")
    assert caught.value.line == 2
    with pytest.raises(SourceError, match="must be a dict"):
        inspect_source("OUTPUT_SCHEMA = [1]\ndef handle(e, c):\n    return 1\n")


def test_the_runtime_needs_only_the_standard_library():
    # -S: no site-packages. The runtime is copied into a small image with nothing else installed.
    src = Path(__file__).resolve().parents[2] / "src"
    code = "import edgefaas.runtime.server, edgefaas.runtime.hostinfo, edgefaas.runtime.source"
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], env={"PYTHONPATH": str(src)}, capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode()
