"""``carbon-jupyter serve``: the team server, and its tokens."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Add ``serve`` to the ``carbon-jupyter`` subcommands."""
    del sub

