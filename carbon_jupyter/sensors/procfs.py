"""Files under ``/proc`` read again and again through one open descriptor.

The sampler reads a few ``/proc`` files every tick (``/proc/stat``,
``/proc/loadavg``, each tracked process's ``stat``). Opening a file costs
several system calls (open, stat, seek, read, read, close), and on a virtual
machine each one can cost tens of microseconds; a ``/proc`` file read with
``pread`` at offset 0 through a descriptor kept open is generated afresh by
the kernel every time, for one system call. :class:`KeptFile` does that.

Only ``/proc`` (and other files the kernel generates on read) may be read this
way: a regular file replaced by renaming (as tests write fake trees) would
keep showing its old content through the old descriptor.

A descriptor inherited through ``fork`` is not trusted (the child may have
closed it, and its number reused): a process opens its own.
"""

from __future__ import annotations

import os
import threading


class KeptFile:
    """``path`` read whole with one ``pread`` per call; reopened after a fork or a failure."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def read(self, size: int = 4096) -> bytes:
        """The file's content now (at most ``size`` bytes). Raises OSError as ``open`` would."""
        fd = self._fd if self._pid == os.getpid() else None
        if fd is None:
            fd = self._open()
        try:
            return os.pread(fd, size, 0)
        except OSError:
            self.close()
            raise

    def _open(self) -> int:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                return self._fd
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            self._fd, self._pid = fd, os.getpid()
            return fd

    def close(self) -> None:
        """Let the descriptor go (safe to call twice; a later read opens it again)."""
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None and self._pid == os.getpid():
                try:
                    os.close(fd)
                except OSError:
                    pass

    def __del__(self) -> None:
        self.close()
