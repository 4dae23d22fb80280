"""Run a cell's code in the user's namespace exactly as IPython would, minus the history.

Used by ``%%carbon``, in two steps so that only the code's own execution is
measured: :func:`compile_cell` transforms the cell body (so ``%magics`` and
``!shell`` lines inside it work) and compiles it under a file name IPython's
traceback machinery knows (so a traceback shows the cell's own lines);
:meth:`CompiledCell.run` executes it in ``shell.user_ns`` and returns the value
of a final expression for IPython to display as the cell's output.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from types import CodeType
from typing import Any


@dataclass(frozen=True)
class CompiledCell:
    """A cell's statements and its final expression, compiled, ready to run."""

    shell: Any
    body: CodeType | None
    last: CodeType | None
    hide_value: bool

    def run(self) -> Any:
        """Execute in ``shell.user_ns``; the last expression's value, or None.

        Exceptions (KeyboardInterrupt included) propagate unchanged.
        """
        __tracebackhide__ = True  # keep this frame out of IPython tracebacks
        namespace = self.shell.user_ns
        if self.body is not None:
            exec(self.body, namespace)
        if self.last is None:
            return None
        value = eval(self.last, namespace)
        return None if self.hide_value else value


def compile_cell(shell: Any, cell: str) -> CompiledCell:
    """Transform and compile ``cell`` as IPython would; SyntaxError propagates unchanged."""
    __tracebackhide__ = True
    transformed = shell.transform_cell(cell)
    filename = shell.compile.cache(transformed, shell.execution_count, raw_code=cell)
    tree = shell.compile.ast_parse(transformed, filename=filename)
    tree = shell.transform_ast(tree)
    final: ast.expr | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        final = tree.body[-1].value
        tree.body = tree.body[:-1]
    # The statements first: IPython's compiler remembers their __future__ imports.
    body = shell.compile(tree, filename, "exec") if tree.body else None
    last: CodeType | None = None
    if final is not None:
        expression = ast.Expression(final)
        ast.fix_missing_locations(expression)
        last = shell.compile(expression, filename, "eval")
    # A trailing semicolon hides the output, as in a normal cell.
    return CompiledCell(shell, body, last, transformed.rstrip().endswith(";"))


def run_cell_code(shell: Any, cell: str) -> Any:
    """Compile and run ``cell`` in ``shell.user_ns``; the last expression's value or None."""
    __tracebackhide__ = True
    return compile_cell(shell, cell).run()
