"""Choose the carbon-intensity factor and the PUE for a run, and say where each came from.

The CO2 of a run is ``energy_kwh × PUE × intensity_g_per_kwh``. :func:`resolve` picks both
factors and returns a :class:`~carbon_jupyter.model.Intensity` that records the factor, its
source key and year, the PUE and its source, and how the factor was chosen.

Carbon intensity: the first layer that says something wins
==========================================================

1. **Arguments** (``chosen_by="argument"``): ``intensity=300`` (a number in gCO2e/kWh) >
   ``region="aws:eu-west-1"`` > ``country="DE"``.
2. **Environment** (``chosen_by="environment"``): ``CARBON_JUPYTER_INTENSITY`` >
   ``CARBON_JUPYTER_CLOUD_REGION`` > ``CARBON_JUPYTER_COUNTRY``.
3. **The cloud provider's own variables** (``chosen_by="cloud-environment"``), read in this
   order:

   * ``AWS_REGION``, then ``AWS_DEFAULT_REGION`` (set by AWS Lambda, CodeBuild, CloudShell,
     ECS on Fargate and SageMaker jobs);
   * ``GOOGLE_CLOUD_REGION``, then ``CLOUD_ML_REGION`` (Google Cloud: a common deployment
     setting, and the region of AI Platform / Vertex AI training jobs);
   * ``REGION_NAME`` (Azure App Service and Azure Functions), honoured only together with
     ``WEBSITE_SITE_NAME`` or ``WEBSITE_INSTANCE_ID``, which those services also set:
     ``REGION_NAME`` alone is too generic a name to trust.

   Azure VMs, Azure ML and Google Colab set no region variable, so there the factor falls
   through to the world average unless you set one. The AWS variables are also set by people
   who use the AWS command line from a laptop; if the code does not run in that region, set
   ``CARBON_JUPYTER_COUNTRY`` (it wins over the provider's variables). A region the tables do
   not know is skipped with a one-time message.
4. **World average** (``chosen_by="default"``, key ``World``): Ember's 2024 world figure.

Within the argument and environment layers every value given is checked, even one that a
higher item overrides: ``country="Germny"`` is an error even next to ``intensity=300``.

PUE
===

Explicit ``pue`` > ``CARBON_JUPYTER_PUE`` > the provider's published fleet PUE when the
location is a cloud region (Google 1.10, AWS 1.14, Azure 1.18; a region named next to an
intensity number counts too) > **1.0**.

A PUE may also be given by name: ``aws``, ``gcp``, ``azure`` (their fleet figures) or
``industry`` (Uptime Institute's 2024 survey average, 1.56), e.g. ``CARBON_JUPYTER_PUE=industry``.

Why 1.0 when nothing is known: most notebooks run on a laptop or a workstation, where no data
centre adds cooling and power-distribution overhead to what the hardware draws. A default of
1.0 reports what was measured and adds nothing that was not; it is also CodeCarbon's default.
Green Algorithms instead assumes an unknown data centre (1.56); that fits a batch cluster, not
a desk. On a server in a data centre of unknown efficiency, set ``CARBON_JUPYTER_PUE=industry``
(or the site's own figure). The run records the PUE and ``pue_source="default"``, so a reader
can tell the default from a chosen value.

Validation
==========

An intensity must be a finite number with ``0 <= intensity < 5000`` gCO2e/kWh (no grid is
above about 1300; a larger number is a unit mistake). A PUE must be finite with
``1.0 <= pue <= 3.0``. A bad value raises :class:`~carbon_jupyter.errors.ConfigError` naming
the argument or variable; an unknown place raises
:class:`~carbon_jupyter.errors.UnknownLocationError` with the closest valid names.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from carbon_jupyter.errors import ConfigError, UnknownLocationError
from carbon_jupyter.intensity import tables
from carbon_jupyter.intensity.lookup import canonical_provider, lookup_country, lookup_region
from carbon_jupyter.model import Intensity
from carbon_jupyter.notices import notice_once

ENV_INTENSITY = "CARBON_JUPYTER_INTENSITY"
ENV_CLOUD_REGION = "CARBON_JUPYTER_CLOUD_REGION"
ENV_COUNTRY = "CARBON_JUPYTER_COUNTRY"
ENV_PUE = "CARBON_JUPYTER_PUE"

#: The cloud providers' own region variables, in the order they are read.
CLOUD_REGION_VARIABLES: tuple[tuple[str, str], ...] = (
    ("AWS_REGION", "aws"),
    ("AWS_DEFAULT_REGION", "aws"),
    ("GOOGLE_CLOUD_REGION", "gcp"),
    ("CLOUD_ML_REGION", "gcp"),
    ("REGION_NAME", "azure"),
)
#: Variables that Azure App Service and Azure Functions set next to ``REGION_NAME``.
AZURE_APP_SERVICE_MARKERS: tuple[str, ...] = ("WEBSITE_SITE_NAME", "WEBSITE_INSTANCE_ID")

#: The PUE used when nothing says the code runs in a data centre (see the module docs).
DEFAULT_PUE = 1.0
PUE_MIN = 1.0
PUE_MAX = 3.0
#: Intensities at or above this are refused as unit mistakes (gCO2e/kWh).
MAX_INTENSITY_G_PER_KWH = 5000.0

CHOSEN_BY_ARGUMENT = "argument"
CHOSEN_BY_ENVIRONMENT = "environment"
CHOSEN_BY_CLOUD_ENVIRONMENT = "cloud-environment"
CHOSEN_BY_DEFAULT = "default"

#: The source key recorded for a number the user gave (intensity or PUE).
USER_SOURCE = "user"
#: The ``pue_source`` recorded when the PUE is :data:`DEFAULT_PUE`.
DEFAULT_PUE_SOURCE = "default"


@dataclass(frozen=True)
class _Factor:
    intensity_g_per_kwh: float
    source: str
    year: int | None
    key: str
    #: The cloud provider when the factor belongs to a cloud region.
    provider: str | None = None


# -- parsing and validation --------------------------------------------------------------


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def check_intensity(value: object, label: str = "intensity") -> float:
    """``value`` as gCO2e/kWh, or ConfigError naming ``label`` (an argument or a variable)."""
    number = _number(value)
    if number is None or not math.isfinite(number) or number < 0:
        raise ConfigError(
            f"{label} must be a finite number >= 0 in grams CO2e per kWh, e.g. 300; got {value!r}"
        )
    if number >= MAX_INTENSITY_G_PER_KWH:
        raise ConfigError(
            f"{label} = {number:g} gCO2e/kWh is not plausible: no grid is above about 1300. "
            f"Give grams CO2e per kWh below {MAX_INTENSITY_G_PER_KWH:g} "
            f"(0.4 kg/kWh is 400 g/kWh; a figure in g/MWh must be divided by 1000)"
        )
    return number


def _named_pue(name: str) -> tables.Constant | None:
    folded = name.strip().lower()
    if folded in ("industry", "industry-average", "datacenter", "data-centre"):
        return tables.industry_pue()
    provider = canonical_provider(folded)
    return tables.provider_pue(provider) if provider else None


def check_pue(value: object, label: str = "pue") -> tuple[float, str]:
    """``value`` as a PUE and its source key, or ConfigError naming ``label``.

    A number is recorded with source ``user``; a name (``aws``, ``gcp``, ``azure``,
    ``industry``) gives that published figure and its source key.
    """
    if isinstance(value, str):
        named = _named_pue(value)
        if named is not None:
            return named.value, named.source
    number = _number(value)
    if number is None or not math.isfinite(number):
        raise ConfigError(
            f"{label} must be a number from {PUE_MIN:g} to {PUE_MAX:g} (data-centre energy / IT "
            f"energy; 1.0 means no overhead) or one of aws, gcp, azure, industry; "
            f"got {value!r}"
        )
    if not PUE_MIN <= number <= PUE_MAX:
        raise ConfigError(
            f"{label} = {number:g} is outside the range {PUE_MIN:g} to {PUE_MAX:g}: a PUE is "
            f"data-centre energy / IT energy, 1.0 with no overhead, about 1.56 for an average "
            f"data centre"
        )
    return number, USER_SOURCE


def _check_location(value: object, label: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{label} must be a non-empty name; got {value!r}")
    return value


# -- layers --------------------------------------------------------------------------------


def _layer(
    *,
    intensity: object,
    region: object,
    country: object,
    labels: tuple[str, str, str],
    prefix_errors: bool,
) -> _Factor | None:
    """The factor one layer gives, checking every value present in it; None if it is empty."""
    intensity_label, region_label, country_label = labels
    number = None if intensity is None else check_intensity(intensity, intensity_label)
    cloud = None
    place = None
    try:
        if region is not None:
            cloud = lookup_region(_check_location(region, region_label))
    except UnknownLocationError as error:
        if not prefix_errors:
            raise
        raise UnknownLocationError(f"{region_label}: {error}") from None
    try:
        if country is not None:
            place = lookup_country(_check_location(country, country_label))
    except UnknownLocationError as error:
        if not prefix_errors:
            raise
        raise UnknownLocationError(f"{country_label}: {error}") from None
    provider = cloud.provider if cloud is not None else None
    if number is not None:
        return _Factor(number, USER_SOURCE, None, USER_SOURCE, provider)
    if cloud is not None:
        return _Factor(cloud.intensity_g_per_kwh, cloud.source, cloud.year, cloud.key, provider)
    if place is not None:
        return _Factor(place.intensity_g_per_kwh, place.source, place.year, place.key)
    return None


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def cloud_region_variables(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """The cloud providers' region variables present and honoured, in the order they are read.

    Each is ``(variable, "provider:region")``; the region is not checked against the tables.
    """
    found: list[tuple[str, str]] = []
    azure_service = any(_env(environ, marker) for marker in AZURE_APP_SERVICE_MARKERS)
    for variable, provider in CLOUD_REGION_VARIABLES:
        value = _env(environ, variable)
        if value is None or (provider == "azure" and not azure_service):
            continue
        found.append((variable, f"{provider}:{value}"))
    return found


def _cloud_layer(environ: Mapping[str, str]) -> _Factor | None:
    for variable, key in cloud_region_variables(environ):
        try:
            cloud = lookup_region(key)
        except UnknownLocationError:
            notice_once(
                f"intensity-cloud-env:{variable}={key}",
                f"{variable}={key.partition(':')[2]!r} names a {key.partition(':')[0]} region "
                f"that the carbon-intensity tables do not have, so it is not used. Set "
                f"{ENV_CLOUD_REGION} or {ENV_COUNTRY} to say where the code runs.",
            )
            continue
        return _Factor(
            cloud.intensity_g_per_kwh, cloud.source, cloud.year, cloud.key, cloud.provider
        )
    return None


# -- the entry point -------------------------------------------------------------------


def resolve(
    *,
    country: str | None = None,
    region: str | None = None,
    intensity: float | str | None = None,
    pue: float | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Intensity:
    """The carbon-intensity factor and PUE for a run, and where each came from.

    ``environ`` defaults to ``os.environ``; pass a mapping to resolve against other settings.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ

    chosen_by = CHOSEN_BY_ARGUMENT
    factor = _layer(
        intensity=intensity,
        region=region,
        country=country,
        labels=("intensity", "region", "country"),
        prefix_errors=False,
    )
    if factor is None:
        chosen_by = CHOSEN_BY_ENVIRONMENT
        factor = _layer(
            intensity=_env(env, ENV_INTENSITY),
            region=_env(env, ENV_CLOUD_REGION),
            country=_env(env, ENV_COUNTRY),
            labels=(ENV_INTENSITY, ENV_CLOUD_REGION, ENV_COUNTRY),
            prefix_errors=True,
        )
    if factor is None:
        chosen_by = CHOSEN_BY_CLOUD_ENVIRONMENT
        factor = _cloud_layer(env)
    if factor is None:
        chosen_by = CHOSEN_BY_DEFAULT
        world = tables.world()
        factor = _Factor(world.intensity_g_per_kwh, world.source, world.year, world.key)

    env_pue = _env(env, ENV_PUE)
    if pue is not None:
        pue_value, pue_source = check_pue(pue, "pue")
    elif env_pue is not None:
        pue_value, pue_source = check_pue(env_pue, ENV_PUE)
    elif factor.provider is not None:
        published = tables.provider_pue(factor.provider)
        pue_value, pue_source = published.value, published.source
    else:
        pue_value, pue_source = DEFAULT_PUE, DEFAULT_PUE_SOURCE

    return Intensity(
        intensity_g_per_kwh=factor.intensity_g_per_kwh,
        source=factor.source,
        year=factor.year,
        pue=pue_value,
        pue_source=pue_source,
        chosen_by=chosen_by,
        key=factor.key,
    )


_CHOSEN_BY_TEXT = {
    CHOSEN_BY_ARGUMENT: "given as an option",
    CHOSEN_BY_ENVIRONMENT: "set in the environment",
    CHOSEN_BY_CLOUD_ENVIRONMENT: "from the cloud provider's region variable",
    CHOSEN_BY_DEFAULT: "nothing set, world average",
}


def describe(intensity: Intensity) -> str:
    """One line for people: ``DEU 344.1 gCO2e/kWh (ember 2024, set in the environment); PUE 1``."""
    year = f" {intensity.year}" if intensity.year is not None else ""
    how = _CHOSEN_BY_TEXT.get(intensity.chosen_by, intensity.chosen_by)
    pue_note = (
        "default, no data-centre overhead"
        if intensity.pue_source == DEFAULT_PUE_SOURCE
        else intensity.pue_source
    )
    return (
        f"{intensity.key} {intensity.intensity_g_per_kwh:g} gCO2e/kWh "
        f"({intensity.source}{year}, {how}); PUE {intensity.pue:g} ({pue_note})"
    )
