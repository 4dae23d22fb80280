"""The dashboard's query parameters: read, checked, and written back into links.

Every filter lives in the URL, so a page is shareable as it is. Empty values
(what a form sends for a field left blank) mean "any". A value that cannot
be used raises :class:`BadParameter` naming the parameter and the fix; the
pages answer it with a 400 page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import get_args
from urllib.parse import urlencode

from carbon_jupyter.model import Status
from carbon_jupyter.server import times
from carbon_jupyter.server.queries import RunQuery

#: Filters on runs, in the order the form shows them.
FILTERS = ("user", "project", "label", "phase", "host", "status", "since", "until")
#: Dimensions the totals over time can be stacked by.
TOTALS_BY = ("user", "project", "label")
#: What the totals over time show.
METRICS = ("energy", "co2")
STATUSES: tuple[str, ...] = get_args(Status)
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_TEXT = 200
#: Most runs one comparison draws.
MAX_COMPARE = 50
COMPARE_BY = ("run", "label", "phase")


class BadParameter(ValueError):
    """A query parameter that cannot be used; ``name`` is the parameter."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name) or []
    if len(values) > 1:
        raise BadParameter(name, "given more than once; give it once")
    value = values[0].strip() if values else ""
    if len(value) > MAX_TEXT:
        raise BadParameter(name, f"longer than {MAX_TEXT} characters")
    if "\x00" in value:
        raise BadParameter(name, "holds a NUL character")
    return value or None


def _positive(params: Mapping[str, Sequence[str]], name: str, default: int, most: int) -> int:
    text = _one(params, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadParameter(name, f"{text!r} is not a whole number") from None
    if not 1 <= value <= most:
        raise BadParameter(name, f"must be between 1 and {most}, not {value}")
    return value


def _choice(params: Mapping[str, Sequence[str]], name: str, choices: Sequence[str]) -> str:
    value = _one(params, name) or choices[0]
    if value not in choices:
        raise BadParameter(name, f"{value!r} is not one of {', '.join(choices)}")
    return value


def _time(params: Mapping[str, Sequence[str]], name: str) -> tuple[str, str] | None:
    """The value as given (kept in links) and as stored text (compared), or None."""
    text = _one(params, name)
    if text is None:
        return None
    try:
        return text, times.canonical(text)
    except ValueError:
        raise BadParameter(
            name,
            f"{text!r} is not a date or time; use ISO-8601, e.g. 2025-01-31 or 2025-01-31T09:00",
        ) from None


def check_known(params: Mapping[str, Sequence[str]], known: Sequence[str]) -> None:
    """Refuse a parameter the page does not know (a typo would otherwise filter nothing)."""
    for name in params:
        if name not in known:
            raise BadParameter(name, f"unknown parameter; this page takes {', '.join(known)}")


@dataclass(frozen=True)
class RunsView:
    """What the runs page shows: the filters, the page of the table, the totals' grouping."""

    filters: dict[str, str]
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE
    by: str = TOTALS_BY[0]
    metric: str = METRICS[0]

    @property
    def query(self) -> RunQuery:
        """The filters and this page as a query for :mod:`carbon_jupyter.server.queries`."""
        f = self.filters
        return RunQuery(
            user=f.get("user"),
            project=f.get("project"),
            label=f.get("label"),
            phase=f.get("phase"),
            host=f.get("host"),
            status=f.get("status"),
            since=f.get("since"),
            until=f.get("until"),
            limit=self.per_page,
            offset=(self.page - 1) * self.per_page,
        )

    def url(self, **changes: object) -> str:
        """The link to this view with ``changes`` (``page=2``, ``by="label"``), defaults omitted."""
        view = replace(self, **changes)  # type: ignore[arg-type]
        pairs: list[tuple[str, str]] = [(k, view.filters[k]) for k in FILTERS if k in view.filters]
        if view.page != 1:
            pairs.append(("page", str(view.page)))
        if view.per_page != DEFAULT_PER_PAGE:
            pairs.append(("per_page", str(view.per_page)))
        if view.by != TOTALS_BY[0]:
            pairs.append(("by", view.by))
        if view.metric != METRICS[0]:
            pairs.append(("metric", view.metric))
        return "/?" + urlencode(pairs) if pairs else "/"


RUNS_PARAMS = (*FILTERS, "page", "per_page", "by", "metric")


def runs_view(params: Mapping[str, Sequence[str]]) -> RunsView:
    """The runs page's parameters, checked (see the module docs)."""
    check_known(params, RUNS_PARAMS)
    filters: dict[str, str] = {}
    for name in ("user", "project", "label", "phase", "host"):
        value = _one(params, name)
        if value is not None:
            filters[name] = value
    status = _one(params, "status")
    if status is not None:
        if status not in STATUSES:
            raise BadParameter("status", f"{status!r} is not one of {', '.join(STATUSES)}")
        filters["status"] = status
    since, until = _time(params, "since"), _time(params, "until")
    if since is not None:
        filters["since"] = since[0]
    if until is not None:
        filters["until"] = until[0]
        if since is not None and until[1] <= since[1]:
            raise BadParameter("until", "must be later than since")
    return RunsView(
        filters=filters,
        page=_positive(params, "page", 1, 1_000_000),
        per_page=_positive(params, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE),
        by=_choice(params, "by", TOTALS_BY),
        metric=_choice(params, "metric", METRICS),
    )


@dataclass(frozen=True)
class CompareView:
    """The runs to compare (in the order given) and how to group them."""

    run_ids: tuple[str, ...]
    by: str = COMPARE_BY[0]


def compare_view(params: Mapping[str, Sequence[str]]) -> CompareView:
    """``runs=a,b,c`` (or ``run=a&run=b`` from a plain form) and ``by``, checked."""
    check_known(params, ("runs", "run", "by"))
    ids: list[str] = []
    for value in [*(params.get("runs") or []), *(params.get("run") or [])]:
        ids.extend(part.strip() for part in value.split(",") if part.strip())
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise BadParameter("runs", "give the runs to compare: /compare?runs=ID,ID")
    if len(ids) > MAX_COMPARE:
        raise BadParameter("runs", f"at most {MAX_COMPARE} runs at once, not {len(ids)}")
    for run_id in ids:
        if len(run_id) > 64:
            raise BadParameter("runs", f"{run_id[:20]!r}... is not a run id (too long)")
    return CompareView(run_ids=tuple(ids), by=_choice(params, "by", COMPARE_BY))
