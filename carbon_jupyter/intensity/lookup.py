"""Find a country, a group of countries or a cloud region in the embedded tables.

Countries are found by ISO 3166-1 alpha-2 code (``DE``), alpha-3 code (``DEU``) or English
name (``Germany``), ignoring case, accents and punctuation; a few common other names work too
(``UK``, ``Czech Republic``, ``Turkey``, ``South Korea``). The same lookup finds Ember's groups
of countries: ``World`` (also ``WLD``), ``EU``, ``Europe``, ``G20``, ``OECD``, continents.

Cloud regions are written ``provider:region``: ``aws:eu-west-1``, ``gcp:europe-west3``,
``azure:westeurope``. Case does not matter, ``amazon``, ``google`` and ``microsoft`` are
accepted for the providers, and Azure's display names work (``azure:West Europe``). A region
written without its provider is accepted when exactly one provider has a region of that name.

A name that is not found raises :class:`~carbon_jupyter.errors.UnknownLocationError`, whose
message lists the closest valid names.
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType

from carbon_jupyter.errors import ConfigError, UnknownLocationError
from carbon_jupyter.intensity import tables
from carbon_jupyter.intensity.tables import (
    PROVIDER_ALIASES,
    PROVIDERS,
    AggregateFactor,
    CountryFactor,
    RegionFactor,
)

#: A place with one annual grid figure: a country or a group of countries.
Place = CountryFactor | AggregateFactor

_COUNTRY_LIST_HINT = "list them with `carbon-jupyter intensity --list countries`"
_REGION_LIST_HINT = "list them with `carbon-jupyter intensity --list regions`"

#: Other names people use for a country, to its ISO alpha-3 code. The tables' own names
#: follow Ember (``Viet Nam``, ``Türkiye``, ``Congo (DRC)``).
_COUNTRY_ALIASES: dict[str, str] = {
    "UK": "GBR",
    "Great Britain": "GBR",
    "Britain": "GBR",
    "United States of America": "USA",
    "Korea": "KOR",
    "Republic of Korea": "KOR",
    "Czech Republic": "CZE",
    "Turkey": "TUR",
    "Vietnam": "VNM",
    "Philippines": "PHL",
    "Ivory Coast": "CIV",
    "Hong Kong": "HKG",
    "Macao": "MAC",
    "Macau": "MAC",
    "Taiwan": "TWN",
    "Tanzania": "TZA",
    "Bosnia and Herzegovina": "BIH",
    "Laos": "LAO",
    "Brunei": "BRN",
    "Palestine": "PSE",
    "Swaziland": "SWZ",
    "Cape Verde": "CPV",
    "Timor-Leste": "TLS",
    "Democratic Republic of the Congo": "COD",
    "DR Congo": "COD",
    "DRC": "COD",
    "Republic of the Congo": "COG",
    "Russian Federation": "RUS",
    "Macedonia": "MKD",
    "Falkland Islands": "FLK",
    "Cook Islands": "COK",
    "Holland": "NLD",
}
#: Other names for Ember's groups of countries.
_AGGREGATE_ALIASES: dict[str, str] = {
    "WLD": "World",
    "Global": "World",
    "European Union": "EU",
}


def normalise(text: str) -> str:
    """Fold ``text`` for matching: lower case, no accents, punctuation to single spaces."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.sub(r"[^0-9a-z]+", " ", plain).strip()


# -- countries and aggregates -----------------------------------------------------------


@functools.cache
def _place_index() -> Mapping[str, Place]:
    """Every accepted spelling (normalised) to its place. Countries win over groups."""
    index: dict[str, Place] = {}
    by_name = {aggregate.name: aggregate for aggregate in tables.aggregates()}
    for alias, name in _AGGREGATE_ALIASES.items():
        if name in by_name:
            index[normalise(alias)] = by_name[name]
    for aggregate in by_name.values():
        index[normalise(aggregate.name)] = aggregate
    by_iso3 = tables.countries_by_iso3()
    for alias, iso3 in _COUNTRY_ALIASES.items():
        if iso3 in by_iso3:
            index[normalise(alias)] = by_iso3[iso3]
    for country in tables.countries():
        index[normalise(country.name)] = country
        if country.iso2:
            index[normalise(country.iso2)] = country
        index[normalise(country.iso3)] = country
    return MappingProxyType(index)


def _place_label(place: Place) -> str:
    if isinstance(place, CountryFactor):
        return f"{place.name} ({place.iso3})"
    return place.name


def _country_suggestions(query: str) -> list[str]:
    index = _place_index()
    labels: list[str] = []
    for match in difflib.get_close_matches(normalise(query), list(index), n=8, cutoff=0.6):
        label = _place_label(index[match])
        if label not in labels:
            labels.append(label)
    return labels[:4]


def lookup_country(code_or_name: str) -> Place:
    """The country (or group of countries) an ISO code or a name stands for.

    >>> lookup_country("de").key
    'DEU'
    >>> lookup_country("European Union").key
    'EU'
    """
    if not isinstance(code_or_name, str) or not code_or_name.strip():
        raise ConfigError(f"country must be an ISO code (DE, DEU) or a name; got {code_or_name!r}")
    place = _place_index().get(normalise(code_or_name))
    if place is not None:
        return place
    suggestions = _country_suggestions(code_or_name)
    hint = f"; did you mean: {', '.join(suggestions)}?" if suggestions else "."
    raise UnknownLocationError(
        f"unknown country {code_or_name.strip()!r}{hint} Use an ISO code (DE, DEU) or a name; "
        f"{_COUNTRY_LIST_HINT}"
    )


# -- cloud regions -----------------------------------------------------------------------


def canonical_provider(name: str) -> str | None:
    """``aws``, ``gcp`` or ``azure`` for a provider name or alias; None if unknown."""
    folded = name.strip().lower()
    if folded in PROVIDERS:
        return folded
    return PROVIDER_ALIASES.get(folded)


def _providers_text() -> str:
    aliases = ", ".join(f"{alias}={name}" for alias, name in PROVIDER_ALIASES.items())
    return f"known providers: {', '.join(PROVIDERS)} (also {aliases})"


def _region_name(text: str) -> str:
    # Azure display names ("West Europe") become region names ("westeurope").
    return re.sub(r"\s+", "", text.strip().lower())


def _region_suggestions(name: str, keys: list[str]) -> list[str]:
    regions = {key.split(":", 1)[1]: key for key in keys}
    matches = difflib.get_close_matches(name, list(regions), n=4, cutoff=0.6)
    return [regions[m] for m in matches]


def _unknown_region(shown: str, suggestions: list[str], extra: str = "") -> UnknownLocationError:
    hint = f"; did you mean: {', '.join(suggestions)}?" if suggestions else "."
    return UnknownLocationError(
        f"unknown cloud region {shown!r}{hint}{extra} Write a region as provider:region "
        f"(aws:eu-west-1, gcp:europe-west3, azure:westeurope); {_REGION_LIST_HINT}"
    )


def lookup_region(key: str) -> RegionFactor:
    """The figure for a cloud region written ``provider:region`` (``aws:eu-west-1``)."""
    if not isinstance(key, str) or not key.strip():
        raise ConfigError(
            f"cloud region must be written provider:region, e.g. aws:eu-west-1; got {key!r}"
        )
    known = tables.regions()
    shown = key.strip()
    if ":" in shown:
        provider_text, _, region_text = shown.partition(":")
        provider = canonical_provider(provider_text)
        if provider is None:
            raise UnknownLocationError(
                f"unknown cloud provider {provider_text.strip()!r} in {shown!r}; "
                f"{_providers_text()}. Write a region as provider:region, e.g. aws:eu-west-1"
            )
        name = _region_name(region_text)
        found = known.get(f"{provider}:{name}")
        if found is not None:
            return found
        same_provider = [k for k in known if k.startswith(f"{provider}:")]
        raise _unknown_region(shown, _region_suggestions(name, same_provider))
    name = _region_name(shown)
    matches = [found for k, found in known.items() if k.split(":", 1)[1] == name]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        keys = ", ".join(m.key for m in matches)
        raise UnknownLocationError(
            f"cloud region {shown!r} exists at several providers ({keys}); "
            f"name the provider, e.g. {matches[0].key}"
        )
    raise _unknown_region(
        shown,
        _region_suggestions(name, list(known)),
        f" A region needs its provider ({', '.join(PROVIDERS)}).",
    )


# -- listings ------------------------------------------------------------------------------


def list_countries() -> list[CountryFactor]:
    """Every country in the tables, in ISO alpha-3 order."""
    return sorted(tables.countries(), key=lambda c: c.iso3)


def list_aggregates() -> list[AggregateFactor]:
    """Every group of countries in the tables (``World``, ``EU``, continents, ...)."""
    return list(tables.aggregates())


def list_regions(provider: str | None = None) -> list[RegionFactor]:
    """Every cloud region with the figure used for it, by ``provider:region``.

    ``provider`` keeps one provider's regions (``aws``, ``gcp``, ``azure`` or an alias).
    """
    wanted: str | None = None
    if provider is not None:
        wanted = canonical_provider(provider)
        if wanted is None:
            raise UnknownLocationError(f"unknown cloud provider {provider!r}; {_providers_text()}")
    return [r for r in tables.regions().values() if wanted is None or r.provider == wanted]
