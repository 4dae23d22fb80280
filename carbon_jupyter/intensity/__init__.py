"""Carbon intensity and PUE: where the electricity came from, and the data-centre overhead.

The CO2 of a run is its energy × the PUE × the grid's carbon intensity (gCO2e/kWh). This
package holds the embedded tables and picks both factors::

    from carbon_jupyter.intensity import resolve

    resolve()                              # World average (472.9, Ember 2024), PUE 1.0
    resolve(country="DE")                  # Germany, by DE, DEU, "Germany" or "germany"
    resolve(region="aws:eu-west-1")        # a cloud region, with AWS's published PUE
    resolve(intensity=120, pue=1.2)        # your own figures

The same settings work from the environment: ``CARBON_JUPYTER_INTENSITY``,
``CARBON_JUPYTER_CLOUD_REGION``, ``CARBON_JUPYTER_COUNTRY``, ``CARBON_JUPYTER_PUE``; on a cloud
service the provider's own region variable is used when nothing else is set. The order and the
PUE default (1.0, no data centre) are explained in :mod:`carbon_jupyter.intensity.resolve`.

What is in the tables: :func:`list_countries`, :func:`list_aggregates`, :func:`list_regions`,
:func:`lookup_country`, :func:`lookup_region`. Where the figures come from and how to credit
them: :func:`attributions`, :func:`source_info` and ``carbon_jupyter/data/DATA-SOURCES.md``.

Country figures are annual averages of generation (Ember); the carbon intensity of a grid
changes by the hour, so a run's CO2 is an estimate even when its energy is measured.

Importing this package reads no data: the tables are parsed on first use.
"""

from __future__ import annotations

from carbon_jupyter.intensity.lookup import (
    Place,
    canonical_provider,
    list_aggregates,
    list_countries,
    list_regions,
    lookup_country,
    lookup_region,
)
from carbon_jupyter.intensity.resolve import (
    DEFAULT_PUE,
    ENV_CLOUD_REGION,
    ENV_COUNTRY,
    ENV_INTENSITY,
    ENV_PUE,
    check_intensity,
    check_pue,
    cloud_region_variables,
    describe,
    resolve,
)
from carbon_jupyter.intensity.sources import Source, attributions, source_info
from carbon_jupyter.intensity.tables import (
    AggregateFactor,
    Constant,
    CountryFactor,
    RegionFactor,
    industry_pue,
    provider_pue,
)

__all__ = [
    "DEFAULT_PUE",
    "ENV_CLOUD_REGION",
    "ENV_COUNTRY",
    "ENV_INTENSITY",
    "ENV_PUE",
    "AggregateFactor",
    "Constant",
    "CountryFactor",
    "Place",
    "RegionFactor",
    "Source",
    "attributions",
    "canonical_provider",
    "check_intensity",
    "check_pue",
    "cloud_region_variables",
    "describe",
    "industry_pue",
    "list_aggregates",
    "list_countries",
    "list_regions",
    "lookup_country",
    "lookup_region",
    "provider_pue",
    "resolve",
    "source_info",
]
