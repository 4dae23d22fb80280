"""A sweep's progress while it runs: which configuration, how long, how much energy so far.

Two views of the same :class:`~carbon_jupyter.sweeps.runner.Progress` reports:
a one-line bar rewritten in place on a terminal (stderr), and an HTML bar
updated in place in a notebook (one ``display_id``). Both are callables to pass
as ``on_progress``.
"""

from __future__ import annotations

import html
import sys
from typing import IO, Any

from carbon_jupyter.show import format as fmt

BAR_WIDTH = 24


def progress_text(p: Any) -> str:
    """``[3/8] ######------ threads=2 (repeat 1)  12.3 s  45.1 J``."""
    done = p.index - (0 if p.done else 1)
    filled = round(BAR_WIDTH * done / p.total) if p.total else BAR_WIDTH
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    state = p.status if p.done else "running"
    return (
        f"[{p.index}/{p.total}] {bar} {p.config} (repeat {p.repeat}) "
        f"{fmt.duration(p.elapsed_s)} {fmt.energy(p.energy_j)} {state}"
    )


class TerminalProgress:
    """One line on ``stream`` (stderr), rewritten per report; a finished one keeps its line."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, p: Any) -> None:
        line = progress_text(p)
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if p.done else ""))
        elif p.done:
            self.stream.write(line + "\n")
        self.stream.flush()


class NotebookProgress:
    """An HTML progress bar in the cell's output, updated in place."""

    def __init__(self) -> None:
        self._handle: Any = None

    def __call__(self, p: Any) -> None:
        from IPython.display import HTML, display

        done = p.index - (0 if p.done else 1)
        percent = 100.0 * done / p.total if p.total else 100.0
        body = HTML(
            f'<div><progress max="100" value="{percent:.0f}" style="width:16em"></progress> '
            f"{p.index}/{p.total} <code>{html.escape(p.config)}</code> (repeat {p.repeat}) "
            f"{fmt.duration(p.elapsed_s)}, {fmt.energy(p.energy_j)}</div>"
        )  # type: ignore[no-untyped-call]
        if self._handle is None:
            self._handle = display(body, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self._handle.update(body)
