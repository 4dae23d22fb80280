"""Timestamps as the server keeps them: UTC ISO-8601 text ending in ``+00:00``.

Text order is then time order, so ``since``/``until`` filters and "newest
first" are plain comparisons of text on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime, timezone


def utc_iso(moment: datetime) -> str:
    """``moment`` as UTC ISO-8601 text (naive moments are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    spec = "milliseconds" if moment.microsecond % 1000 == 0 else "microseconds"
    return moment.isoformat(timespec=spec)


def now_iso() -> str:
    """The server's clock now, as stored text."""
    return utc_iso(datetime.now(timezone.utc))


def parse_iso(text: str) -> datetime:
    """ISO-8601 text (a date, or a date and time, ``Z`` accepted) as an aware datetime.

    Raises ``ValueError`` for anything else. Times without an offset are UTC.
    """
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment


def canonical(text: str) -> str:
    """``text`` in stored form: kept when already UTC ``+00:00``, else converted.

    Raises ``ValueError`` when ``text`` is not ISO-8601.
    """
    moment = parse_iso(text)
    stripped = text.strip()
    if stripped.endswith("+00:00") and "T" in stripped:
        return stripped
    return utc_iso(moment)


def day_of(text: str) -> str:
    """The UTC date (``YYYY-MM-DD``) of a stored timestamp."""
    return parse_iso(text).astimezone(timezone.utc).date().isoformat()
