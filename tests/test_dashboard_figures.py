"""The dashboard's pure parts: totals per day as stacked bars, whole ticks, its parameters."""

from __future__ import annotations

import itertools

import pytest

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.forward.records import complete_ticks
from carbon_jupyter.server.dashboard.figures import totals_html
from carbon_jupyter.server.dashboard.params import BadParameter, compare_view, runs_view
from carbon_jupyter.show.plots_totals import OTHER, DayTotal, totals_data, totals_figure


def test_totals_stack_each_day_largest_groups_first_and_sum_the_rest() -> None:
    totals = [DayTotal("2025-03-01", f"user-{i}", 3600.0 * (i + 1), float(i), 1) for i in range(12)]
    totals.append(DayTotal("2025-03-02", "user-11", 7200.0, 1.0, 1))
    data = totals_data(totals, metric="energy", top=8)
    assert data.unit == "Wh"
    assert data.groups[:3] == ("user-11", "user-10", "user-9")
    assert data.groups[-1] == OTHER and len(data.groups) == 9
    c = data.columns
    first_day = [i for i, d in enumerate(c["day_text"]) if d == "2025-03-01"]
    # each segment starts where the one below it ends; the stack ends at the day's total
    for below, above in itertools.pairwise(first_day):
        assert c["bottom"][above] == pytest.approx(c["top"][below])
    assert c["top"][first_day[-1]] == pytest.approx(sum(range(1, 13)))
    other = c["group"].index(OTHER)
    assert c["value"][other] == pytest.approx(1 + 2 + 3 + 4)  # user-0 .. user-3
    assert c["day"][first_day[0]] == 1740787200000.0  # midnight UTC, in ms


def test_totals_change_unit_and_metric_and_refuse_what_they_cannot_draw() -> None:
    big = [DayTotal("2025-03-01", "a", 3600.0 * 5000, 2500.0, 1)]
    assert totals_data(big, metric="energy").unit == "kWh"
    co2 = totals_data(big, metric="co2")
    assert co2.unit == "kg" and co2.columns["value"] == [2.5]
    unnamed = totals_data([DayTotal("2025-03-01", None, 3600.0, 1.0, 1)])
    assert unnamed.columns["group"] == ["(none)"]
    with pytest.raises(ConfigError, match="metric"):
        totals_data(big, metric="money")
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        totals_data([DayTotal("yesterday", "a", 1.0, 1.0, 1)])


def test_the_filled_totals_figure_is_the_built_one_with_the_data() -> None:
    from bokeh.embed import components

    totals = [DayTotal("2025-03-01", "<script>alert(1)</script>", 3600.0, 1.0, 1)]
    data = totals_data(totals)
    script, div = totals_html(data, by="label")
    built, _ = components(totals_figure(totals, by="label"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in script
    assert "<script>alert(1)" not in script.replace("<script", "", 1)
    assert 'data-root-id="' in div
    # the same models as a figure built from scratch (ids differ)
    for marker in ('"name":"carbon-totals"', '"legend_field"', "VBar", "HoverTool"):
        assert (marker in script) == (marker in built), marker


def _rows(*ticks: tuple[float, int]) -> list[dict[str, object]]:
    rows, seq = [], 0
    for t_s, devices in ticks:
        for d in range(devices):
            seq += 1
            rows.append({"seq": seq, "t_s": t_s, "device_id": f"dev{d}", "energy_j": t_s})
    return rows


def test_only_whole_ticks_are_drawn_while_a_run_is_live() -> None:
    rows = _rows((0.5, 3), (1.0, 3), (1.5, 2))
    samples, last = complete_ticks(rows, 3, finished=False)
    assert len(samples) == 6 and last == 6
    samples, last = complete_ticks(rows, 3, finished=True)
    assert len(samples) == 8 and last == 8
    assert complete_ticks(_rows((0.5, 1)), 3, finished=False) == ([], None)
    assert complete_ticks([], 3, finished=False) == ([], None)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"since": ["soon"]}, "since"),
        ({"status": ["done"]}, "status"),
        ({"page": ["-1"]}, "page"),
        ({"by": ["host"]}, "by"),
        ({"colour": ["red"]}, "colour"),
        ({"host": ["a\x00b"]}, "host"),
    ],
)
def test_a_bad_parameter_is_named(params: dict[str, list[str]], name: str) -> None:
    with pytest.raises(BadParameter) as caught:
        runs_view(params)
    assert caught.value.name == name
    assert str(caught.value).startswith(f"{name}: ")


def test_filters_come_back_in_the_links() -> None:
    view = runs_view({"label": ["train*"], "since": ["2025-03-01"], "page": ["2"], "by": ["label"]})
    assert view.query.label == "train*" and view.query.offset == view.per_page
    assert view.url(page=3) == "/?label=train%2A&since=2025-03-01&page=3&by=label"
    assert view.url(filters={}, page=1, by="user") == "/"
    assert compare_view({"runs": ["a,b"], "run": ["c", "a"]}).run_ids == ("a", "b", "c")
