"""Reading a function file without running it: does it compile, and what does it declare.

The gateway uses this to refuse broken code before any backend sees it (the old version
keeps serving), and to describe every function for ``/system/apis``. Nothing here
executes the user's code: the file is compiled and its syntax tree read, and the
schemas are taken with ``ast.literal_eval``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

HANDLER_NAME = "handle"
INPUT_SCHEMA_NAME = "INPUT_SCHEMA"
OUTPUT_SCHEMA_NAME = "OUTPUT_SCHEMA"


class SourceError(ValueError):
    """The function's source is not acceptable; ``line`` is where, when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


@dataclass(frozen=True)
class FunctionSource:
    """What a function file declares about itself."""

    description: str
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None


def inspect_source(code: str, filename: str = "handler.py") -> FunctionSource:
    """Compile ``code`` and read its docstring and schemas; raise SourceError if unusable."""
    try:
        compile(code, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        detail = f" ({exc.text.strip()})" if exc.text and exc.text.strip() else ""
        raise SourceError(f"{exc.msg}{detail}", exc.lineno) from None
    except ValueError as exc:  # e.g. "source code string cannot contain null bytes"
        raise SourceError(str(exc)) from None
    tree = ast.parse(code, filename)

    handler = _find_handler(tree)
    if handler is None:
        raise SourceError(f"the file defines no {HANDLER_NAME}(event, context)")
    if isinstance(handler, ast.FunctionDef | ast.AsyncFunctionDef):
        _check_signature(handler)

    description = ast.get_docstring(tree) or ""
    if not description and isinstance(handler, ast.FunctionDef | ast.AsyncFunctionDef):
        description = ast.get_docstring(handler) or ""
    return FunctionSource(
        description=description.strip(),
        input_schema=_literal_dict(tree, INPUT_SCHEMA_NAME),
        output_schema=_literal_dict(tree, OUTPUT_SCHEMA_NAME),
    )


def _binds(node: ast.stmt, name: str) -> bool:
    """Does this top-level statement bind ``name`` (def, assignment or import)?"""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return node.name == name
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.target.id == name and node.value is not None
    if isinstance(node, ast.ImportFrom | ast.Import):
        return any((alias.asname or alias.name) == name for alias in node.names)
    return False


def _find_handler(tree: ast.Module) -> ast.stmt | None:
    found: ast.stmt | None = None
    for node in tree.body:
        if _binds(node, HANDLER_NAME):
            found = node  # the last binding wins, as it would at import time
    return found


def _check_signature(handler: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
    args = handler.args
    positional = len(args.posonlyargs) + len(args.args)
    if positional < 2 and args.vararg is None:
        raise SourceError(
            f"{HANDLER_NAME}() must accept two arguments (event, context), it takes {positional}",
            handler.lineno,
        )


def _literal_dict(tree: ast.Module, name: str) -> dict[str, Any] | None:
    value: dict[str, Any] | None = None
    for node in tree.body:
        if not isinstance(node, ast.Assign | ast.AnnAssign) or not _binds(node, name):
            continue
        assert node.value is not None
        try:
            literal = ast.literal_eval(node.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise SourceError(f"{name} must be a literal dict (JSON Schema)", node.lineno) from None
        if not isinstance(literal, dict):
            raise SourceError(f"{name} must be a dict (JSON Schema)", node.lineno)
        value = literal
    return value
