"""Run a cell's code in the user's namespace exactly as IPython would, minus the history.

Used by ``%%carbon``: the cell body is transformed (so ``%magics`` and ``!shell``
lines inside it work), compiled under a file name IPython's traceback
machinery knows (so a traceback shows the cell's own lines), executed in
``shell.user_ns``, and the value of a final expression is returned for IPython
to display as the cell's output.
"""

from __future__ import annotations

import ast
from typing import Any


def run_cell_code(shell: Any, cell: str) -> Any:
    """Execute ``cell`` in ``shell.user_ns``; return the last expression's value or None.

    Exceptions (KeyboardInterrupt included) propagate unchanged.
    """
    __tracebackhide__ = True  # keep this frame out of IPython tracebacks
    transformed = shell.transform_cell(cell)
    filename = shell.compile.cache(transformed, shell.execution_count, raw_code=cell)
    tree = shell.compile.ast_parse(transformed, filename=filename)
    tree = shell.transform_ast(tree)
    last: ast.expr | None = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1].value
        tree.body = tree.body[:-1]
    namespace = shell.user_ns
    if tree.body:
        exec(shell.compile(tree, filename, "exec"), namespace)
    if last is None:
        return None
    expression = ast.Expression(last)
    ast.fix_missing_locations(expression)
    value = eval(shell.compile(expression, filename, "eval"), namespace)
    # A trailing semicolon hides the output, as in a normal cell.
    if transformed.rstrip().endswith(";"):
        return None
    return value
