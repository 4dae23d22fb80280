"""What went wrong with the store file, in words that name the file and the fix.

Every SQLite or file-system error the store meets is turned into one
:class:`~carbon_jupyter.errors.StoreError` here, so a user reads "the disk
holding ~/.local/share/jupyter/carbon_jupyter/carbon.db is full; free some
space or set CARBON_JUPYTER_DB ..." rather than ``sqlite3.OperationalError``.
The store never deletes, truncates or rewrites a file it cannot read.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from carbon_jupyter.errors import StoreError

# Primary SQLite result codes (https://www.sqlite.org/rescode.html).
SQLITE_PERM = 3
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26

_ELSEWHERE = "or set CARBON_JUPYTER_DB to a file elsewhere"

_BY_MESSAGE = (
    ("not a database", SQLITE_NOTADB),
    ("malformed", SQLITE_CORRUPT),
    ("disk is full", SQLITE_FULL),
    ("readonly database", SQLITE_READONLY),
    ("unable to open", SQLITE_CANTOPEN),
    ("database is locked", SQLITE_BUSY),
    ("disk i/o error", SQLITE_IOERR),
)


def sqlite_code(exc: sqlite3.Error) -> int | None:
    """The primary SQLite result code of ``exc`` (from Python 3.11, else from its text)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(exc).lower()
    for fragment, value in _BY_MESSAGE:
        if fragment in text:
            return value
    return None


def describe(exc: BaseException, path: Path, doing: str, timeout_s: float = 0.0) -> str:
    """One message for ``exc`` met while ``doing`` something with the store at ``path``."""
    folder = path.parent
    if isinstance(exc, sqlite3.Error):
        code = sqlite_code(exc)
        said = f"(SQLite says: {exc})"
        if code == SQLITE_NOTADB:
            return (
                f"{path} is not a carbon-jupyter run store: it is not an SQLite database, or "
                f"it is encrypted {said}. It was left untouched. Move it aside, {_ELSEWHERE}."
            )
        if code == SQLITE_CORRUPT:
            return (
                f"The run store {path} is damaged {said}. It was left untouched. Keep a copy, "
                f"save what can be read with `sqlite3 {path} .recover > recovered.sql`, then "
                f"move the file aside, {_ELSEWHERE}."
            )
        if code == SQLITE_FULL:
            return (
                f"The disk holding the run store {path} is full while {doing} {said}. Runs "
                f"stored before are intact. Free some space, {_ELSEWHERE} on another disk."
            )
        if code in (SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_PERM):
            return (
                f"Cannot write the run store {path} while {doing} {said}: the file or its "
                f"folder {folder} is not writable by this user (SQLite also needs to create "
                f"{path.name}-wal and {path.name}-shm beside it). Make both writable "
                f"(chmod u+w), {_ELSEWHERE}."
            )
        if code in (SQLITE_BUSY, SQLITE_LOCKED):
            return (
                f"The run store {path} stayed locked by another program for more than "
                f"{timeout_s:g} s while {doing} {said}. Close the program that holds a "
                "transaction open on it (a database browser, a stuck process) and try again."
            )
        if code == SQLITE_IOERR:
            return (
                f"The disk reported an I/O error on the run store {path} while {doing} "
                f"{said}. Check the disk and its free space, {_ELSEWHERE}."
            )
        return f"The run store {path} failed while {doing} {said}. {_ELSEWHERE.capitalize()}."
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return (
                f"The disk holding the run store {path} is full while {doing} ({exc}). Free "
                f"some space, {_ELSEWHERE} on another disk."
            )
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            blocked = Path(exc.filename).parent if exc.filename else folder
            return (
                f"Cannot create the run store {path} ({exc}): the folder {blocked} is not "
                f"writable by this user. Make it writable (chmod u+w), {_ELSEWHERE}."
            )
        return f"Cannot use the run store {path} while {doing} ({exc}). {_ELSEWHERE.capitalize()}."
    return f"The run store {path} failed while {doing}: {exc}"


@contextlib.contextmanager
def translated(path: Path, doing: str, timeout_s: float = 0.0) -> Iterator[None]:
    """Turn SQLite and file-system errors inside the block into one clear StoreError."""
    try:
        yield
    except StoreError:
        raise
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(describe(exc, path, doing, timeout_s)) from exc
