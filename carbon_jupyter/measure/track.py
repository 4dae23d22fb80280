"""``track``: a block or a function measured by a :class:`~carbon_jupyter.measure.tracker.Tracker`.

It is the Python API's front door: ``with track("x") as t: ...`` or ``@track("x")``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from carbon_jupyter.measure.tracker import Tracker
from carbon_jupyter.model import Run

F = TypeVar("F", bound=Callable[..., Any])


class _Track:
    """What :func:`track` returns: a context manager and a decorator in one."""

    def __init__(self, label: str | None, kwargs: dict[str, Any]) -> None:
        self._label = label
        self._kwargs = kwargs
        self.tracker: Tracker | None = None

    @property
    def run(self) -> Run | None:
        """The finished run after the block (or the last decorated call)."""
        return self.tracker.run if self.tracker is not None else None

    def __enter__(self) -> _Track:
        self.tracker = Tracker(self._label, **self._kwargs)
        self.tracker.start()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        assert self.tracker is not None
        self.tracker.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        label = self._label or getattr(func, "__qualname__", None)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            handle = track(label, **self._kwargs)
            try:
                with handle:
                    return func(*args, **kwargs)
            finally:
                wrapper.last_run = handle.run  # type: ignore[attr-defined]

        return cast(F, wrapper)


def track(label: str | None = None, **kwargs: Any) -> _Track:
    """Track a block (``with track("x") as t: ...; t.run``) or a function (``@track("x")``).

    Keyword arguments are those of :class:`Tracker`: ``phase``, ``items``,
    ``interval``, ``country``, ``region``, ``intensity``, ``pue``, ``gpus``,
    ``attribution``, ``tags``, ``job``, ``cluster`` (a Dask client: every host of
    its cluster measured too). An exception inside the block is recorded
    (``status="error"``, or ``"interrupted"`` for KeyboardInterrupt) and
    propagates unchanged. A decorated function stores its latest result
    run in ``func.last_run``.
    """
    # Validate now, so a bad argument fails at the decoration or the with line.
    Tracker(label, **{**kwargs, "sink": None, "sensors": ()})
    return _Track(label, kwargs)
