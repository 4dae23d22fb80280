"""What went wrong with the store file, in words that name the file and the fix.

Every SQLite or file-system error the store meets is turned into one
:class:`~carbon_jupyter.errors.StoreError` here, so a user reads "the disk
holding ~/.local/share/jupyter/carbon_jupyter/carbon.db is full; free some
space or set CARBON_JUPYTER_DB ..." rather than ``sqlite3.OperationalError``.
The store never deletes, truncates or rewrites a file it cannot read; a
damaged one is named with the commands that check it and recover what can be
read (``carbon-jupyter store check`` / ``store recover``).

:func:`cannot_write` and :func:`disk_full` tell, from such an error, whether
the file may still be read (a reader then opens it read-only) and whether
waiting for space will help (a writer then keeps what it could not write).
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from carbon_jupyter.errors import StoreError


class StoreMissingError(StoreError):
    """There is no run store at ``path`` (reading never creates one); the message says so."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"There is no run store at {path}: any tracked run creates it (`carbon-jupyter "
            "measure`, `%%carbon` in a notebook, `carbon_jupyter.track`). To read another "
            "store, give its path with --db or CARBON_JUPYTER_DB."
        )
        self.path = path


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
_ELSEWHERE_SENTENCE = "Or set CARBON_JUPYTER_DB to a file elsewhere"
#: Failures to write that leave the file readable: full, read-only, or its -shm not creatable.
_WRITE_REFUSED = (SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_PERM)
_WRITE_REFUSED_ERRNO = (errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT)

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
    """One message for ``exc`` met while ``doing`` something with the store at ``path``.

    ``doing`` may end in a preposition ("saving samples of run 3f2a9c1b to"): the
    message then reads "... to it".
    """
    folder = path.parent
    if doing.rsplit(" ", 1)[-1] in ("in", "to", "from", "into"):
        doing = f"{doing} it"
    if isinstance(exc, sqlite3.Error):
        code = sqlite_code(exc)
        said = f"(SQLite says: {exc})"
        if code == SQLITE_NOTADB:
            return (
                f"{path} is not a carbon-jupyter run store: it is not an SQLite database, it "
                f"is encrypted, or its header is damaged {said}. It was left untouched. If it "
                f"is your run store, `carbon-jupyter store recover --db {path}` moves it aside "
                f"and copies every readable run into a fresh one; else move it aside, "
                f"{_ELSEWHERE}."
            )
        if code == SQLITE_CORRUPT:
            return (
                f"The run store {path} is damaged {said}. It was left untouched. "
                f"`carbon-jupyter store check --db {path}` says what is wrong; `carbon-jupyter "
                f"store recover --db {path}` moves it aside and copies every readable run into "
                f"a fresh one. {_ELSEWHERE_SENTENCE}."
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
        return f"The run store {path} failed while {doing} {said}. {_ELSEWHERE_SENTENCE}."
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
        return f"Cannot use the run store {path} while {doing} ({exc}). {_ELSEWHERE_SENTENCE}."
    return f"The run store {path} failed while {doing}: {exc}"


def _cause(exc: BaseException) -> BaseException:
    """The SQLite or file-system error behind a translated StoreError (else ``exc``)."""
    while isinstance(exc, StoreError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (a StoreError from :func:`translated`, or its cause) is a full disk."""
    cause = _cause(exc)
    if isinstance(cause, sqlite3.Error):
        return sqlite_code(cause) == SQLITE_FULL
    return isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)


def cannot_write(exc: BaseException) -> bool:
    """True when ``exc`` means the file cannot be written now but may still be read."""
    cause = _cause(exc)
    if isinstance(cause, sqlite3.Error):
        return sqlite_code(cause) in _WRITE_REFUSED
    return isinstance(cause, OSError) and cause.errno in _WRITE_REFUSED_ERRNO


@contextlib.contextmanager
def translated(path: Path, doing: str, timeout_s: float = 0.0) -> Iterator[None]:
    """Turn SQLite and file-system errors inside the block into one clear StoreError."""
    try:
        yield
    except StoreError:
        raise
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(describe(exc, path, doing, timeout_s)) from exc
