"""The embedded carbon-intensity and PUE tables, read once on first use.

The figures ship as CSV files in ``carbon_jupyter/data`` (see ``DATA-SOURCES.md`` there for
where each number comes from and its licence):

``country_intensity.csv``
    One annual grid carbon intensity per country (gCO2e/kWh), mostly Ember's yearly data.
``region_aggregates.csv``
    Ember's aggregates: ``World``, ``EU``, ``G20``, ``OECD``, continents.
``cloud_regions.csv``
    One or more figures per cloud region (Google's own region data, Cloud Carbon Footprint).
``cloud_region_locations.csv``
    Cloud regions with no figure of their own, with the country they are in; such a region
    uses that country's figure.
``constants.csv``
    PUEs of the cloud providers and of the industry average, among other constants.

Nothing is read at import time: each table is parsed with the :mod:`csv` module the first time
it is asked for and kept (``functools.cache``). Every figure is a frozen dataclass whose
fields carry their unit.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

#: Cloud providers known to the tables, by their canonical short name.
PROVIDERS: tuple[str, ...] = ("aws", "azure", "gcp")
#: Other names a provider may be given by; matched case-insensitively.
PROVIDER_ALIASES: dict[str, str] = {
    "amazon": "aws",
    "google": "gcp",
    "microsoft": "azure",
}

#: Which figure wins when a cloud region has several rows (lower rank wins). Google's own
#: per-region data first, then Electricity Maps zones (not shipped, ODbL), then Cloud Carbon
#: Footprint's 2020-21 factors; any other source after those.
_REGION_SOURCE_RANK: dict[str, int] = {
    "google_rci": 0,
    "emaps_ccfmap": 1,
    "emaps_geomap": 1,
    "ccf_egrid2020": 2,
    "ccf_cfp2021": 2,
    "ccf_eea": 2,
    "ccf": 2,
}
_OTHER_SOURCE_RANK = 3


@dataclass(frozen=True)
class CountryFactor:
    """A country's annual grid carbon intensity."""

    iso3: str
    iso2: str
    name: str
    intensity_g_per_kwh: float
    year: int | None
    source: str

    @property
    def key(self) -> str:
        """The key a run records for this figure: the ISO alpha-3 code (``DEU``)."""
        return self.iso3


@dataclass(frozen=True)
class AggregateFactor:
    """The annual grid carbon intensity of a group of countries (``World``, ``EU``, ...)."""

    name: str
    intensity_g_per_kwh: float
    year: int | None
    source: str

    @property
    def key(self) -> str:
        return self.name


@dataclass(frozen=True)
class RegionFactor:
    """The grid carbon intensity used for one cloud region.

    ``basis`` says where the figure comes from: ``"region"`` when a source gives a figure for
    the region itself, ``"country"`` when the region has none and the figure is that of the
    country the region is in (``iso3``); ``source`` and ``year`` are then the country's.
    """

    provider: str
    region: str
    location: str
    iso3: str
    intensity_g_per_kwh: float
    year: int | None
    source: str
    basis: str = "region"

    @property
    def key(self) -> str:
        """``provider:region``, e.g. ``aws:eu-west-1``."""
        return f"{self.provider}:{self.region}"


@dataclass(frozen=True)
class Constant:
    """One row of ``constants.csv``: a named figure with its unit, year and source."""

    key: str
    value: float
    unit: str
    year: int | None
    source: str
    note: str


# -- reading ----------------------------------------------------------------------------


@functools.cache
def read_rows(filename: str) -> tuple[dict[str, str], ...]:
    """The rows of one data file in ``carbon_jupyter/data`` as dictionaries of strings."""
    from importlib import resources

    data = resources.files("carbon_jupyter").joinpath("data")
    text = data.joinpath(filename).read_text("utf-8")
    return tuple(csv.DictReader(io.StringIO(text)))


def _year(text: str) -> int | None:
    return int(text) if text.strip() else None


@functools.cache
def countries() -> tuple[CountryFactor, ...]:
    """Every country row, in file order. The ``WLD`` world row is an aggregate, not here."""
    return tuple(
        CountryFactor(
            iso3=row["iso3"].upper(),
            iso2=row["iso2"].upper(),
            name=row["country"],
            intensity_g_per_kwh=float(row["gco2_per_kwh"]),
            year=_year(row["year"]),
            source=row["source"],
        )
        for row in read_rows("country_intensity.csv")
        if row["iso3"].upper() != "WLD"
    )


@functools.cache
def countries_by_iso3() -> Mapping[str, CountryFactor]:
    return MappingProxyType({c.iso3: c for c in countries()})


@functools.cache
def aggregates() -> tuple[AggregateFactor, ...]:
    """Every aggregate row (``World``, ``EU``, continents, ...), in file order."""
    return tuple(
        AggregateFactor(
            name=row["aggregate"],
            intensity_g_per_kwh=float(row["gco2_per_kwh"]),
            year=_year(row["year"]),
            source=row["source"],
        )
        for row in read_rows("region_aggregates.csv")
    )


def world() -> AggregateFactor:
    """The world average, the factor used when nothing says where the code runs."""
    for aggregate in aggregates():
        if aggregate.name == "World":
            return aggregate
    raise LookupError("region_aggregates.csv has no World row")  # pragma: no cover


def _preference(row: RegionFactor) -> tuple[int, int]:
    return _REGION_SOURCE_RANK.get(row.source, _OTHER_SOURCE_RANK), -(row.year or 0)


def preferred(rows: Iterable[RegionFactor]) -> dict[str, RegionFactor]:
    """One row per ``provider:region``: the preferred source, then the newer year."""
    chosen: dict[str, RegionFactor] = {}
    for row in rows:
        held = chosen.get(row.key)
        if held is None or _preference(row) < _preference(held):
            chosen[row.key] = row
    return chosen


@functools.cache
def region_rows() -> tuple[RegionFactor, ...]:
    """Every row of ``cloud_regions.csv``, several per region where sources overlap."""
    return tuple(
        RegionFactor(
            provider=row["provider"].lower(),
            region=row["region"].lower(),
            location=row["location"],
            iso3=row["iso3"].upper(),
            intensity_g_per_kwh=float(row["gco2_per_kwh"]),
            year=_year(row["year"]),
            source=row["source"],
        )
        for row in read_rows("cloud_regions.csv")
    )


@functools.cache
def regions() -> Mapping[str, RegionFactor]:
    """The figure used for each cloud region, by ``provider:region`` key.

    Where a region has several rows, the one from the preferred source wins
    (``google_rci`` > ``ccf_*``), the newer year breaking ties. A region listed only in
    ``cloud_region_locations.csv`` gets its country's figure, with ``basis="country"``.
    """
    chosen = preferred(region_rows())
    by_iso3 = countries_by_iso3()
    for place in read_rows("cloud_region_locations.csv"):
        key = f"{place['provider'].lower()}:{place['region'].lower()}"
        country = by_iso3.get(place["iso3"].upper())
        if key in chosen or country is None:
            continue
        chosen[key] = RegionFactor(
            provider=place["provider"].lower(),
            region=place["region"].lower(),
            location=place["location"],
            iso3=country.iso3,
            intensity_g_per_kwh=country.intensity_g_per_kwh,
            year=country.year,
            source=country.source,
            basis="country",
        )
    return MappingProxyType(dict(sorted(chosen.items())))


@functools.cache
def constants() -> tuple[Constant, ...]:
    """Every row of ``constants.csv``."""
    return tuple(
        Constant(
            key=row["key"],
            value=float(row["value"]),
            unit=row["unit"],
            year=_year(row["year"]),
            source=row["source"],
            note=row["note"],
        )
        for row in read_rows("constants.csv")
    )


def newest_constant(key: str) -> Constant:
    """The row for ``key`` with the newest year (a row without a year counts as oldest)."""
    rows = [c for c in constants() if c.key == key]
    if not rows:
        raise LookupError(f"constants.csv has no {key!r} row")
    return max(rows, key=lambda c: c.year or 0)


def provider_pue(provider: str) -> Constant:
    """The fleet-wide PUE a cloud provider publishes (``pue_aws``, ``pue_gcp``, ``pue_azure``)."""
    return newest_constant(f"pue_{provider}")


def industry_pue() -> Constant:
    """The industry-average data-centre PUE (Uptime Institute survey)."""
    return newest_constant("pue_default_industry_avg")


#: The data files whose ``source`` (or ``location_source``) column names a data source.
DATA_FILES: tuple[str, ...] = (
    "country_intensity.csv",
    "region_aggregates.csv",
    "cloud_regions.csv",
    "cloud_region_locations.csv",
    "constants.csv",
    "hardware_power.csv",
    "vcpu_power.csv",
)


@functools.cache
def shipped_source_keys() -> tuple[str, ...]:
    """Every source key that appears in the shipped data files, sorted."""
    keys: set[str] = set()
    for filename in DATA_FILES:
        for row in read_rows(filename):
            for column in ("source", "location_source"):
                value = (row.get(column) or "").strip()
                if value:
                    keys.add(value)
    return tuple(sorted(keys))
