"""One-time messages to the user: a sensor fell back, a store write failed.

Each message is said once per process per ``key`` through the ``carbon_jupyter``
logger at WARNING level, which Python prints to stderr when nothing else is
configured (in a notebook it appears under the cell). Messages name the fix.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("carbon_jupyter")

_said: set[str] = set()
_lock = threading.Lock()


def notice_once(key: str, message: str) -> bool:
    """Log ``message`` unless one with the same ``key`` was already logged. True if logged."""
    with _lock:
        if key in _said:
            return False
        _said.add(key)
    logger.warning(message)
    return True


def reset() -> None:
    """Forget what was said (tests)."""
    with _lock:
        _said.clear()
