"""Run a cell's code in the user's namespace exactly as IPython would, minus the history.

Used by ``%%carbon``, in two steps so that only the code's own execution is
measured: :func:`compile_cell` transforms the cell body (so ``%magics`` and
``!shell`` lines inside it work) and compiles it under a file name IPython's
traceback machinery knows (so a traceback shows the cell's own lines);
:meth:`CompiledCell.run` executes it in ``shell.user_ns`` and returns the value
of a final expression for IPython to display as the cell's output.
:func:`finish_view` ends the run's view: its final plot and summary, or after a
``--dask`` run the plot of the cluster's hosts and their job (:func:`show_job`).
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


def finish_view(shell: Any, view: Any, tracker: Any, run: Any, quiet: bool = False) -> None:
    """Replace ``view`` with ``run``'s final plot and summary; beside a cluster, the job's.

    A run with a cluster is the notebook's own part of a job (its GPUs): the job,
    every host with its devices, is what the cell measured. Its live view
    (:class:`~carbon_jupyter.show.live_hosts.HostsView`) becomes the hosts' plot
    above the job; without a plot, the job is shown as text.
    """
    if getattr(tracker, "cluster", None) is None:
        if view is not None:
            view.finish(run)
        return
    from carbon_jupyter.show.live_hosts import HostsView

    plotted = isinstance(view, HostsView) and view.plotted
    found = show_job(shell, tracker, quiet or plotted)
    if plotted:
        view.finish_job(found)
    elif view is not None:
        view.close()


def show_job(shell: Any, tracker: Any, quiet: bool = False) -> Any:
    """After a run with ``--dask``: its job as one run with its hosts, shown and kept.

    The job goes into the user's namespace as ``_carbon_job`` (and is returned);
    shown unless ``quiet``. None for a run without a cluster. A job that
    cannot be read here (the workers store elsewhere) is said in one line.
    """
    if getattr(tracker, "cluster", None) is None or tracker.job is None:
        return None
    from carbon_jupyter.errors import CarbonError
    from carbon_jupyter.jobs import job

    job_id = tracker.job.job_id
    try:
        found = job(job_id, store=getattr(tracker.sink, "path", None))
    except CarbonError as exc:
        print(f"carbon: job {job_id}: {exc}")
        return None
    if shell is not None:
        shell.user_ns["_carbon_job"] = found
    if not quiet:
        import html

        from carbon_jupyter.jobs.show import job_text
        from carbon_jupyter.show.display import _show

        text = job_text(found)
        _show({"text/html": f"<pre>{html.escape(text)}</pre>", "text/plain": text})
    return found
