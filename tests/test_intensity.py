"""Carbon intensity and PUE: embedded tables, lookups, resolution order, errors, attribution."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
from importlib import resources

import pytest

from carbon_jupyter.errors import ConfigError, UnknownLocationError
from carbon_jupyter.intensity import (
    DEFAULT_PUE,
    AggregateFactor,
    CountryFactor,
    RegionFactor,
    attributions,
    check_intensity,
    check_pue,
    cloud_region_variables,
    describe,
    list_aggregates,
    list_countries,
    list_regions,
    lookup_country,
    lookup_region,
    resolve,
    source_info,
    tables,
)
from carbon_jupyter.intensity.sources import SOURCES
from carbon_jupyter.model import Intensity

WORLD_G_PER_KWH = 472.9


def _data_text(name: str) -> str:
    return resources.files("carbon_jupyter").joinpath("data").joinpath(name).read_text("utf-8")


# -- tables ------------------------------------------------------------------------------


def test_import_reads_no_data() -> None:
    code = (
        "import carbon_jupyter.intensity as i, carbon_jupyter.intensity.tables as t;"
        "assert t.read_rows.cache_info().currsize == 0, 'tables read at import';"
        "assert 'pandas' not in __import__('sys').modules"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_factor_is_a_finite_non_negative_figure_with_a_source() -> None:
    factors: list[CountryFactor | AggregateFactor | RegionFactor] = [
        *list_countries(),
        *list_aggregates(),
        *tables.region_rows(),
        *list_regions(),
    ]
    assert len(factors) > 300
    for factor in factors:
        assert math.isfinite(factor.intensity_g_per_kwh), factor
        assert 0 <= factor.intensity_g_per_kwh < 1500, factor
        assert factor.source, factor
    # Ember gives the Central African Republic 0 (2022); every other figure is positive.
    zeros = [f.key for f in factors if f.intensity_g_per_kwh == 0]
    assert zeros == ["CAF"]


def test_every_constant_is_positive_and_pues_are_plausible() -> None:
    for constant in tables.constants():
        assert math.isfinite(constant.value), constant
        assert constant.value > 0, constant
        if constant.key.startswith("pue_"):
            assert 1.0 <= constant.value <= 3.0, constant


def test_country_codes_are_unique_and_well_formed() -> None:
    countries = list_countries()
    assert len(countries) == 214
    assert len({c.iso3 for c in countries}) == len(countries)
    assert len({c.iso2 for c in countries}) == len(countries)
    assert all(len(c.iso3) == 3 and len(c.iso2) == 2 for c in countries)
    assert "WLD" not in {c.iso3 for c in countries}


def test_no_electricity_maps_rows_are_shipped() -> None:
    sources = {row.source for row in tables.region_rows()}
    assert not any(s.startswith("emaps") for s in sources)
    assert "emaps" not in _data_text("cloud_regions.csv")


def test_every_region_location_row_names_a_known_country_and_a_new_region() -> None:
    rows = tables.read_rows("cloud_region_locations.csv")
    with_figures = {row.key for row in tables.region_rows()}
    for row in rows:
        key = f"{row['provider']}:{row['region']}"
        assert row["iso3"] in tables.countries_by_iso3(), row
        assert key not in with_figures, f"{key} has its own figure"
        assert lookup_region(key).basis == "country"


# -- countries ---------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["DE", "de", "DEU", "deu", "Germany", "germany", " GERMANY "])
def test_country_by_code_or_name(query: str) -> None:
    germany = lookup_country(query)
    assert isinstance(germany, CountryFactor)
    assert (germany.iso3, germany.iso2, germany.name) == ("DEU", "DE", "Germany")
    assert germany.key == "DEU"
    assert germany.source == "ember"
    assert germany.year is not None
    assert germany.year >= 2022


@pytest.mark.parametrize(
    ("query", "iso3"),
    [
        ("UK", "GBR"),
        ("GB", "GBR"),
        ("United States", "USA"),
        ("us", "USA"),
        ("turkey", "TUR"),
        ("Turkiye", "TUR"),
        ("Türkiye", "TUR"),
        ("cote d'ivoire", "CIV"),
        ("Czech Republic", "CZE"),
        ("NA", "NAM"),  # Namibia's code must not be read as a missing value
        ("XK", "XKX"),
    ],
)
def test_country_other_names(query: str, iso3: str) -> None:
    assert lookup_country(query).key == iso3


@pytest.mark.parametrize(
    ("query", "key", "value"),
    [("World", "World", WORLD_G_PER_KWH), ("WLD", "World", WORLD_G_PER_KWH), ("eu", "EU", 213)],
)
def test_groups_of_countries(query: str, key: str, value: float) -> None:
    place = lookup_country(query)
    assert isinstance(place, AggregateFactor)
    assert (place.key, place.intensity_g_per_kwh, place.year) == (key, value, 2024)


def test_owid_fallback_country() -> None:
    gibraltar = lookup_country("Gibraltar")
    assert gibraltar.source == "owid_cc"


def test_unknown_country_suggests_the_closest_names() -> None:
    with pytest.raises(UnknownLocationError) as caught:
        lookup_country("Germny")
    message = str(caught.value)
    assert "unknown country 'Germny'" in message
    assert "did you mean: Germany (DEU)?" in message
    assert "carbon-jupyter intensity --list countries" in message


def test_unknown_country_without_close_names_still_says_how_to_fix() -> None:
    with pytest.raises(UnknownLocationError, match="Use an ISO code") as caught:
        lookup_country("Atlantis-on-Sea")
    assert "did you mean" not in str(caught.value)


def test_empty_country_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ISO code"):
        lookup_country("  ")


# -- cloud regions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "key", "source"),
    [
        ("aws:eu-west-1", "aws:eu-west-1", "ccf_eea"),
        ("AWS:EU-WEST-1", "aws:eu-west-1", "ccf_eea"),
        ("amazon:us-east-1", "aws:us-east-1", "ccf_egrid2020"),
        ("gcp:europe-west3", "gcp:europe-west3", "google_rci"),
        ("google:europe-west3", "gcp:europe-west3", "google_rci"),
        ("azure:westeurope", "azure:westeurope", "ccf_eea"),
        ("microsoft:westeurope", "azure:westeurope", "ccf_eea"),
        ("azure:West Europe", "azure:westeurope", "ccf_eea"),
        ("europe-west3", "gcp:europe-west3", "google_rci"),
    ],
)
def test_region_lookup(query: str, key: str, source: str) -> None:
    region = lookup_region(query)
    assert region.key == key
    assert region.source == source
    assert region.basis == "region"


def test_region_without_its_own_figure_uses_its_country() -> None:
    hyderabad = lookup_region("aws:ap-south-2")
    india = lookup_country("IN")
    assert hyderabad.basis == "country"
    assert hyderabad.iso3 == "IND"
    assert (hyderabad.intensity_g_per_kwh, hyderabad.source, hyderabad.year) == (
        india.intensity_g_per_kwh,
        india.source,
        india.year,
    )


def _row(
    provider: str, region: str, g_per_kwh: float, year: int | None, source: str
) -> RegionFactor:
    return RegionFactor(provider, region, "somewhere", "DEU", g_per_kwh, year, source)


def test_region_precedence_prefers_google_then_ccf_then_newer() -> None:
    chosen = tables.preferred(
        [
            _row("gcp", "x-1", 300, 2020, "ccf_cfp2021"),
            _row("gcp", "x-1", 100, 2024, "google_rci"),
            _row("gcp", "x-1", 200, 2026, "ccf_eea"),
            _row("aws", "y-1", 70, None, "ccf_eea"),
            _row("aws", "y-1", 60, 2025, "somebody_else"),
            _row("aws", "y-2", 50, 2019, "ccf_egrid2020"),
            _row("aws", "y-2", 55, 2020, "ccf_cfp2021"),
        ]
    )
    assert {key: row.intensity_g_per_kwh for key, row in chosen.items()} == {
        "gcp:x-1": 100,
        "aws:y-1": 70,
        "aws:y-2": 55,
    }


def test_shipped_regions_use_the_preferred_row() -> None:
    with_figures = tables.preferred(tables.region_rows())
    assert len(with_figures) == 119
    for key, row in with_figures.items():
        assert lookup_region(key) == row


def test_unknown_region_suggests_keys_of_the_same_provider() -> None:
    with pytest.raises(UnknownLocationError) as caught:
        lookup_region("aws:eu-west-9")
    message = str(caught.value)
    assert "unknown cloud region 'aws:eu-west-9'" in message
    assert "aws:eu-west-1" in message
    assert "carbon-jupyter intensity --list regions" in message
    assert "gcp:" not in message.split("did you mean:")[1].split("?")[0]


def test_unknown_provider_lists_the_providers() -> None:
    with pytest.raises(UnknownLocationError) as caught:
        lookup_region("awz:eu-west-1")
    message = str(caught.value)
    assert "unknown cloud provider 'awz'" in message
    for provider in ("aws", "azure", "gcp"):
        assert provider in message


def test_region_without_provider_that_matches_nothing_asks_for_the_provider() -> None:
    with pytest.raises(UnknownLocationError, match="needs its provider") as caught:
        lookup_region("europe-west33")
    assert "gcp:europe-west3" in str(caught.value)


def test_list_regions_by_provider() -> None:
    gcp = list_regions("google")
    assert len(gcp) == 44
    assert {r.provider for r in gcp} == {"gcp"}
    keys = [r.key for r in list_regions()]
    assert keys == sorted(keys)
    assert len(keys) == len(set(keys))
    with pytest.raises(UnknownLocationError, match="known providers"):
        list_regions("ibm")


# -- resolution order -------------------------------------------------------------------


def test_nothing_set_gives_the_world_average_and_pue_1() -> None:
    result = resolve(environ={})
    assert result == Intensity(
        intensity_g_per_kwh=WORLD_G_PER_KWH,
        source="ember",
        year=2024,
        pue=DEFAULT_PUE,
        pue_source="default",
        chosen_by="default",
        key="World",
    )
    assert DEFAULT_PUE == 1.0


def test_argument_country() -> None:
    result = resolve(country="DE", environ={})
    germany = lookup_country("DEU")
    assert (result.key, result.intensity_g_per_kwh, result.source, result.year) == (
        "DEU",
        germany.intensity_g_per_kwh,
        "ember",
        germany.year,
    )
    assert result.chosen_by == "argument"
    assert (result.pue, result.pue_source) == (1.0, "default")


def test_argument_region_brings_the_providers_pue() -> None:
    result = resolve(region="gcp:europe-west3", environ={})
    assert (result.key, result.source, result.year) == ("gcp:europe-west3", "google_rci", 2024)
    assert (result.pue, result.pue_source) == (1.10, "google_env_2024")
    assert resolve(region="aws:eu-west-1", environ={}).pue == 1.14  # newest year, 2025
    assert resolve(region="azure:westeurope", environ={}).pue == 1.18


def test_argument_order_intensity_over_region_over_country() -> None:
    both = resolve(region="aws:eu-west-1", country="FR", environ={})
    assert both.key == "aws:eu-west-1"
    number = resolve(intensity=123.4, region="aws:eu-west-1", country="FR", environ={})
    assert (number.intensity_g_per_kwh, number.source, number.year) == (123.4, "user", None)
    assert number.chosen_by == "argument"
    assert number.pue == 1.14  # the region still says which data centre


def test_arguments_win_over_environment() -> None:
    environ = {
        "CARBON_JUPYTER_COUNTRY": "FR",
        "CARBON_JUPYTER_INTENSITY": "99",
        "AWS_REGION": "eu-west-1",
    }
    result = resolve(country="DE", environ=environ)
    assert (result.key, result.chosen_by) == ("DEU", "argument")
    assert result.pue == 1.0


@pytest.mark.parametrize(
    ("environ", "key", "source"),
    [
        ({"CARBON_JUPYTER_COUNTRY": "france"}, "FRA", "ember"),
        ({"CARBON_JUPYTER_CLOUD_REGION": "aws:eu-west-3"}, "aws:eu-west-3", "ccf_eea"),
        ({"CARBON_JUPYTER_INTENSITY": "250"}, "user", "user"),
        (
            {"CARBON_JUPYTER_COUNTRY": "FR", "CARBON_JUPYTER_CLOUD_REGION": "gcp:us-east1"},
            "gcp:us-east1",
            "google_rci",
        ),
        (
            {"CARBON_JUPYTER_CLOUD_REGION": "gcp:us-east1", "CARBON_JUPYTER_INTENSITY": "250"},
            "user",
            "user",
        ),
        ({"CARBON_JUPYTER_COUNTRY": "FR", "AWS_REGION": "us-east-1"}, "FRA", "ember"),
    ],
)
def test_environment_layer(environ: dict[str, str], key: str, source: str) -> None:
    result = resolve(environ=environ)
    assert (result.key, result.source, result.chosen_by) == (key, source, "environment")


def test_blank_environment_values_count_as_unset() -> None:
    result = resolve(environ={"CARBON_JUPYTER_COUNTRY": "  ", "CARBON_JUPYTER_PUE": ""})
    assert (result.key, result.chosen_by, result.pue) == ("World", "default", 1.0)


@pytest.mark.parametrize(
    ("environ", "key", "pue"),
    [
        ({"AWS_REGION": "eu-central-1"}, "aws:eu-central-1", 1.14),
        ({"AWS_DEFAULT_REGION": "us-west-2"}, "aws:us-west-2", 1.14),
        (
            {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "us-west-2"},
            "aws:eu-central-1",
            1.14,
        ),
        ({"GOOGLE_CLOUD_REGION": "europe-west4"}, "gcp:europe-west4", 1.10),
        ({"CLOUD_ML_REGION": "us-central1"}, "gcp:us-central1", 1.10),
        ({"REGION_NAME": "West Europe", "WEBSITE_SITE_NAME": "app"}, "azure:westeurope", 1.18),
        ({"REGION_NAME": "uksouth", "WEBSITE_INSTANCE_ID": "abc"}, "azure:uksouth", 1.18),
    ],
)
def test_cloud_provider_variables(environ: dict[str, str], key: str, pue: float) -> None:
    result = resolve(environ=environ)
    assert (result.key, result.chosen_by, result.pue) == (key, "cloud-environment", pue)


def test_region_name_alone_is_not_taken_as_azure() -> None:
    result = resolve(environ={"REGION_NAME": "westeurope"})
    assert (result.key, result.chosen_by) == ("World", "default")
    assert cloud_region_variables({"REGION_NAME": "westeurope"}) == []


def test_unknown_cloud_region_variable_falls_through_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {"AWS_REGION": "xx-nowhere-9", "GOOGLE_CLOUD_REGION": "europe-west1"}
    with caplog.at_level(logging.WARNING, logger="carbon_jupyter"):
        first = resolve(environ=environ)
        resolve(environ=environ)
    assert (first.key, first.chosen_by) == ("gcp:europe-west1", "cloud-environment")
    messages = [r.getMessage() for r in caplog.records if "xx-nowhere-9" in r.getMessage()]
    assert len(messages) == 1
    assert "CARBON_JUPYTER_COUNTRY" in messages[0]
    alone = resolve(environ={"AWS_REGION": "xx-nowhere-9"})
    assert (alone.key, alone.chosen_by) == ("World", "default")


def test_resolve_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARBON_JUPYTER_COUNTRY", "SE")
    monkeypatch.setenv("CARBON_JUPYTER_PUE", "1.3")
    result = resolve()
    assert (result.key, result.chosen_by, result.pue, result.pue_source) == (
        "SWE",
        "environment",
        1.3,
        "user",
    )


# -- PUE --------------------------------------------------------------------------------


def test_pue_order() -> None:
    environ = {"CARBON_JUPYTER_PUE": "1.4", "AWS_REGION": "eu-west-1"}
    assert resolve(pue=1.2, environ=environ).pue == 1.2
    from_env = resolve(environ=environ)
    assert (from_env.pue, from_env.pue_source, from_env.key) == (1.4, "user", "aws:eu-west-1")
    provider = resolve(environ={"AWS_REGION": "eu-west-1"})
    assert (provider.pue, provider.pue_source) == (1.14, "aws_sustainability")
    assert resolve(country="DE", environ={}).pue == 1.0


@pytest.mark.parametrize(
    ("value", "pue", "source"),
    [
        ("industry", 1.56, "uptime_2024"),
        ("aws", 1.14, "aws_sustainability"),
        ("Google", 1.10, "google_env_2024"),
        ("azure", 1.18, "dcd_2024"),
        ("1.25", 1.25, "user"),
        (1, 1.0, "user"),
        (3.0, 3.0, "user"),
    ],
)
def test_pue_by_number_or_name(value: float | str, pue: float, source: str) -> None:
    assert check_pue(value) == (pue, source)
    result = resolve(pue=value, environ={})
    assert (result.pue, result.pue_source) == (pue, source)


@pytest.mark.parametrize("value", [0.9, 3.01, float("nan"), float("inf"), "fast", True, -1])
def test_bad_pue_names_the_range(value: object) -> None:
    with pytest.raises(ConfigError, match=r"1 to 3"):
        resolve(pue=value, environ={})  # type: ignore[arg-type]


def test_bad_pue_in_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CARBON_JUPYTER_PUE") as caught:
        resolve(environ={"CARBON_JUPYTER_PUE": "0.5"})
    assert "1 to 3" in str(caught.value)


# -- intensity validation --------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.0, 12.5, "300", " 4999.9 "])
def test_good_intensity(value: object) -> None:
    assert check_intensity(value) == float(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), "lots", True, None])
def test_bad_intensity(value: object) -> None:
    with pytest.raises(ConfigError, match="finite number >= 0"):
        check_intensity(value)


@pytest.mark.parametrize("value", [5000, 472900])
def test_huge_intensity_is_taken_for_a_unit_mistake(value: float) -> None:
    with pytest.raises(ConfigError, match="g/kWh") as caught:
        resolve(intensity=value, environ={})
    assert "5000" in str(caught.value)


def test_bad_intensity_in_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^CARBON_JUPYTER_INTENSITY"):
        resolve(environ={"CARBON_JUPYTER_INTENSITY": "0.4kg"})


def test_unknown_country_in_environment_names_the_variable_and_suggests() -> None:
    with pytest.raises(UnknownLocationError) as caught:
        resolve(environ={"CARBON_JUPYTER_COUNTRY": "Germny"})
    message = str(caught.value)
    assert message.startswith("CARBON_JUPYTER_COUNTRY: unknown country 'Germny'")
    assert "Germany (DEU)" in message


def test_unknown_region_in_environment_names_the_variable() -> None:
    with pytest.raises(UnknownLocationError, match=r"^CARBON_JUPYTER_CLOUD_REGION: "):
        resolve(environ={"CARBON_JUPYTER_CLOUD_REGION": "aws:eu-west-9"})


def test_every_value_in_the_winning_layer_is_checked() -> None:
    with pytest.raises(UnknownLocationError, match="Germny"):
        resolve(intensity=300, country="Germny", environ={})


def test_lower_layers_are_not_consulted_once_one_applies() -> None:
    result = resolve(country="DE", environ={"CARBON_JUPYTER_COUNTRY": "Germny"})
    assert result.key == "DEU"


def test_describe_says_where_the_factor_came_from() -> None:
    line = describe(resolve(environ={}))
    assert "World 472.9 gCO2e/kWh" in line
    assert "ember 2024" in line
    assert "PUE 1 (default" in line


# -- attribution ---------------------------------------------------------------------------


def test_every_shipped_source_has_an_attribution_line() -> None:
    shipped = tables.shipped_source_keys()
    missing = [key for key in shipped if source_info(key) is None]
    assert not missing, f"sources shipped without attribution: {missing}"
    assert {"ember", "owid_cc", "google_rci", "ccf_eea", "uptime_2024"} <= set(shipped)
    lines = attributions()
    for key in shipped:
        source = source_info(key)
        assert source is not None
        assert source.attribution in lines
        assert source.licence


def test_attribution_lines_are_in_data_sources_md() -> None:
    text = _data_text("DATA-SOURCES.md")
    for key in tables.shipped_source_keys():
        source = SOURCES[key]
        assert f"`{key}`" in text, f"{key} is not described in DATA-SOURCES.md"
        assert source.attribution in text, f"attribution of {key} differs in DATA-SOURCES.md"


def test_data_sources_md_says_no_odbl_data_ships() -> None:
    text = _data_text("DATA-SOURCES.md")
    assert "No Electricity Maps data is shipped" in text
    assert "ODbL" in text


def test_ember_attribution_is_exact() -> None:
    assert (
        "Grid carbon intensity: Ember, Yearly Electricity Data (2025), CC BY 4.0, "
        "https://ember-energy.org"
    ) in attributions()
