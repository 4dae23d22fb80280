"""``carbon-jupyter status`` and ``carbon-jupyter push``: runs on their way to a team server."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Add ``status`` and ``push`` to the ``carbon-jupyter`` subcommands."""
    del sub
