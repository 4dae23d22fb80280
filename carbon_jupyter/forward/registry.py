"""One sender per process, store file and server; every one stopped at interpreter exit.

:func:`sender_for` returns the running :class:`~carbon_jupyter.forward.sender.Sender`
for a store file and a destination (creating and starting it the first time),
so every tracker of a process shares one thread and one outbox lease per
server. At exit (``atexit``) :func:`stop_all` asks each to write what it holds
in memory to the outbox and to try a last send, within
:data:`~carbon_jupyter.forward.sender.EXIT_BUDGET_S` seconds in all; a sender
still busy then has its memory written to the outbox from the exiting thread.
After a ``fork`` the child starts with none (the parent's threads are not there).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from pathlib import Path

from carbon_jupyter.forward.config import Destination
from carbon_jupyter.forward.sender import EXIT_BUDGET_S, Sender

_senders: dict[tuple[Path, str, str], Sender] = {}
_lock = threading.Lock()
_pid = os.getpid()
_exit_hook = False


def sender_for(store_path: Path, destination: Destination) -> Sender:
    """The running sender of this process for ``store_path`` and ``destination``."""
    global _pid, _exit_hook
    key = (store_path, *destination.key)
    with _lock:
        if _pid != os.getpid():
            _senders.clear()
            _pid = os.getpid()
        sender = _senders.get(key)
        if sender is None:
            sender = Sender(store_path, destination)
            _senders[key] = sender
        elif sender.destination != destination:  # same server and token, another interval
            sender.destination = destination
        if not _exit_hook:
            atexit.register(stop_all)
            _exit_hook = True
    return sender.start()


def senders() -> list[Sender]:
    """This process's senders."""
    with _lock:
        return list(_senders.values()) if _pid == os.getpid() else []


def stop_all(timeout_s: float = EXIT_BUDGET_S) -> None:
    """Stop every sender: memory to the outbox, a last send, all within ``timeout_s``."""
    with _lock:
        found = list(_senders.values()) if _pid == os.getpid() else []
        _senders.clear()
    deadline = time.monotonic() + timeout_s
    for sender in found:
        sender.request_stop(timeout_s / max(len(found), 1))
    for sender in found:
        sender.join(deadline - time.monotonic())
    for sender in found:
        if sender.alive:
            sender.keep_in_outbox()
