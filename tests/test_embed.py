"""Figures serialized once and filled per plot draw what Bokeh itself would, with fresh ids."""

from __future__ import annotations

import base64
import gzip
import html
import json
import re
from collections import Counter
from typing import Any

import numpy as np
import pytest

from carbon_jupyter.show import embed
from carbon_jupyter.show.plots import power_figure, power_rows
from tests.test_plots import DEVICES, GERMANY, make_samples

TITLE = "</script><b>'fine\"-tune\\'"


def docs_of(page: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The documents and render items in a plot's ``<script>``, decoded as BokehJS does."""
    match = re.search(r"var d='(.*?)',r=(\[.*?\]),n=0;", page, re.S)
    assert match, page[:300]
    text = html.unescape(match.group(1).replace("\\\\", "\\"))  # a JS string, HTML-escaped
    return json.loads(text), json.loads(match.group(2))


def objects(doc: Any) -> list[dict[str, Any]]:
    return [node for node in embed._walk(doc) if node.get("type") == "object" and "name" in node]


def ids_of(page: str) -> set[str]:
    docs, items = docs_of(page)
    found = {str(node["id"]) for node in embed._walk(docs) if "id" in node}
    return found | set(docs) | {e for item in items for e in item["roots"].values()}


def column(source: dict[str, Any], name: str) -> list[float]:
    entries = dict(source["attributes"]["data"]["entries"])
    array = entries[name]
    raw = base64.b64decode(array["array"]["data"])
    if raw[:2] == b"\x1f\x8b":  # Bokeh gzips larger arrays
        raw = gzip.decompress(raw)
    return list(np.frombuffer(raw, dtype=array["dtype"]))


@pytest.fixture
def template() -> embed.PowerTemplate:
    return embed.power_template(DEVICES, GERMANY, "device")


def test_a_filled_plot_has_the_runs_data_and_its_own_heading(
    template: embed.PowerTemplate,
) -> None:
    samples = make_samples(12)
    data = power_rows(DEVICES, samples, intensity=GERMANY)
    page = template.html(data, TITLE)
    assert "</script>" not in page.removesuffix("</script>")  # user text cannot end the script
    docs, items = docs_of(page)
    (doc,) = docs.values()
    titles = [o["attributes"]["text"] for o in objects(doc) if o["name"] == "Title"]
    assert titles[0] == f"{TITLE}: power"
    (source,) = [o for o in objects(doc) if o["name"] == "ColumnDataSource"]
    for name in ("t_s", "co2_g", "power_w_0"):
        assert column(source, name) == pytest.approx(list(data[name]), nan_ok=True)
    # The page element and the root it draws are the ones the <div> names.
    (item,) = items
    (root, element) = next(iter(item["roots"].items()))
    assert f'<div id="{element}" data-root-id="{root}"' in page


def test_it_draws_the_same_figure_as_bokeh_would(template: embed.PowerTemplate) -> None:
    samples = make_samples(5)
    filled, _ = docs_of(template.html(power_rows(DEVICES, samples, intensity=GERMANY), "run"))
    direct, _ = embed._serialized(power_figure(DEVICES, samples, intensity=GERMANY, title="run"))

    def shape(docs: dict[str, Any]) -> Counter[str]:
        return Counter(o["name"] for doc in docs.values() for o in objects(doc))

    assert shape(filled) == shape(direct)


def test_every_plot_has_ids_of_its_own(template: embed.PowerTemplate) -> None:
    data = power_rows(DEVICES, make_samples(3), intensity=GERMANY)
    first, second = template.html(data, "a"), template.html(data, "a")
    assert ids_of(first).isdisjoint(ids_of(second))
    assert template is embed.power_template(DEVICES, GERMANY, "device")  # built once


def test_a_widget_state_draws_the_kernels_source(template: embed.PowerTemplate) -> None:
    data = power_rows(DEVICES, [], intensity=GERMANY)
    state = json.loads(template.widget_state("p-kernel-source", data, TITLE))
    assert set(state) == {"docs_json", "render_items", "div"}
    (doc,) = state["docs_json"].values()
    sources = [o for o in objects(doc) if o["name"] == "ColumnDataSource"]
    assert [s["id"] for s in sources] == ["p-kernel-source"]
    assert column(sources[0], "t_s") == [0.0]
    titles = [o["attributes"]["text"] for o in objects(doc) if o["name"] == "Title"]
    assert titles[0] == f"{TITLE}: power"
    (root,) = state["render_items"][0]["root_ids"]
    assert f'data-root-id="{root}"' in state["div"]


def test_whole_figures_embed_with_the_same_script() -> None:
    page = embed.embed_html(power_figure(DEVICES, make_samples(3), intensity=GERMANY))
    docs, items = docs_of(page)
    assert len(docs) == 1 and items[0]["docid"] in docs
    assert page.count("<script") == 1 and page.count("\n") == 0  # one line in a saved notebook
