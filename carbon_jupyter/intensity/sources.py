"""Where each embedded figure comes from, its licence, and the line that credits it.

Every row of the shipped data files names its source by a short key (``ember``,
``google_rci``, ``ccf_eea``, ...); a run records the key of the factor it used. This module
maps each key to the source's full name, licence and attribution line. The same lines are in
``carbon_jupyter/data/DATA-SOURCES.md``, which ships next to the data.

:func:`attributions` gives the lines for every source the shipped files actually use; show
them wherever the figures are listed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """A data source: its key, full name, licence and the attribution line it asks for."""

    key: str
    name: str
    licence: str
    attribution: str
    url: str = ""


_CCF = (
    "Cloud Carbon Footprint, © Thoughtworks, Apache-2.0.",
    "Apache-2.0",
    "https://github.com/cloud-carbon-footprint/cloud-carbon-footprint",
)
_CODECARBON = (
    "CodeCarbon (Mila, BCG Gamma, Comet.ml, Haverford College; Code Carbon NGO), MIT.",
    "MIT",
    "https://github.com/mlco2/codecarbon",
)
_CITED = "figure cited from the document named"


def _ccf(key: str, name: str) -> Source:
    return Source(key, name, _CCF[1], _CCF[0], _CCF[2])


def _codecarbon(key: str, name: str) -> Source:
    return Source(key, name, _CODECARBON[1], _CODECARBON[0], _CODECARBON[2])


_SOURCES: tuple[Source, ...] = (
    # -- grid carbon intensity ----------------------------------------------------------
    Source(
        "ember",
        "Ember, Yearly Electricity Data (2025 release), emissions intensity gCO2e/kWh",
        "CC BY 4.0",
        "Grid carbon intensity: Ember, Yearly Electricity Data (2025), CC BY 4.0, "
        "https://ember-energy.org",
        "https://ember-energy.org/data/yearly-electricity-data/",
    ),
    Source(
        "owid_cc",
        "Our World in Data, carbon intensity of electricity (2023 values, as shipped in "
        "CodeCarbon)",
        "CC BY 4.0 (data); MIT (CodeCarbon)",
        "Our World in Data, based on Ember and Energy Institute Statistical Review of World "
        "Energy — processed by Our World in Data (CC BY 4.0), via CodeCarbon (MIT).",
        "https://ourworldindata.org/grapher/carbon-intensity-electricity",
    ),
    Source(
        "google_rci",
        "Google Cloud, Carbon free energy for Google Cloud regions (2024, grid carbon "
        "intensity, location-based)",
        "Apache-2.0",
        "Google Cloud region carbon data (GoogleCloudPlatform/region-carbon-info), Apache-2.0.",
        "https://cloud.google.com/sustainability/region-carbon",
    ),
    _ccf("ccf_egrid2020", "Cloud Carbon Footprint factors from US EPA eGRID2020 (2020)"),
    _ccf("ccf_cfp2021", "Cloud Carbon Footprint factors from carbonfootprint.com (2021)"),
    _ccf("ccf_eea", "Cloud Carbon Footprint factors from the European Environment Agency"),
    _ccf("ccf", "Cloud Carbon Footprint constants and methodology"),
    # -- cloud region locations (annotations) -----------------------------------------
    Source(
        "botocore",
        "AWS region ids and names from botocore 1.44.8 endpoints.json; the region's country "
        "is an annotation made for carbon-jupyter",
        "Apache-2.0",
        "AWS region names: botocore (Amazon Web Services), Apache-2.0.",
        "https://github.com/boto/botocore",
    ),
    Source(
        "azure_regions",
        "Azure region names and locations as Microsoft publishes them; the region's country "
        "is an annotation made for carbon-jupyter",
        "facts (region names and places)",
        "Azure region names and locations: Microsoft Azure geographies "
        "(https://azure.microsoft.com/explore/global-infrastructure/geographies).",
        "https://azure.microsoft.com/explore/global-infrastructure/geographies",
    ),
    # -- PUE and other constants --------------------------------------------------------
    Source(
        "uptime_2024",
        "Uptime Institute, Global Data Center Survey 2024",
        _CITED,
        "Uptime Institute, Global Data Center Survey 2024: average annual PUE 1.56.",
        "https://uptimeinstitute.com",
    ),
    Source(
        "uptime_2023",
        "Uptime Institute, Uptime Intelligence Update 221 (Nov 2023)",
        _CITED,
        "Uptime Institute, Uptime Intelligence Update 221 (Nov 2023): industry average PUE "
        "1.58 in 2023.",
        "https://uptimeinstitute.com",
    ),
    Source(
        "uptime_2022",
        "Uptime Institute, 12th annual Global Data Center Survey (2022)",
        _CITED,
        "Uptime Institute, Global Data Center Survey 2022: average annual PUE 1.55.",
        "https://uptimeinstitute.com",
    ),
    Source(
        "uptime_2021",
        "Uptime Institute, Global Data Center Survey 2021 (as reported by Capacity Media)",
        _CITED,
        "Uptime Institute, Global Data Center Survey 2021 (reported by Capacity Media): "
        "average annual PUE 1.57.",
        "https://uptimeinstitute.com",
    ),
    Source(
        "google_env_2024",
        "Google, 2024 Environmental Report",
        _CITED,
        "Google, 2024 Environmental Report: average annual PUE of Google data centers 1.10 "
        "in 2023.",
        "https://blog.google",
    ),
    Source(
        "aws_sustainability",
        "Amazon Web Services, data-centre sustainability pages",
        _CITED,
        "Amazon: aws.amazon.com/sustainability/data-centers (global PUE 1.15 in 2024) and "
        "sustainability.aboutamazon.com (1.14 in 2025).",
        "https://aws.amazon.com/sustainability/data-centers/",
    ),
    Source(
        "dcd_2024",
        "DatacenterDynamics, AWS global data centers achieved PUE of 1.15 in 2023 (Dec 2024)",
        _CITED,
        "DatacenterDynamics (Dec 2024): Microsoft global facility average PUE 1.18.",
        "https://www.datacenterdynamics.com",
    ),
    Source(
        "windowscentral_2022",
        "Windows Central on the Microsoft Azure blog (Apr 2022)",
        _CITED,
        "Windows Central, reporting the Microsoft Azure blog (Apr 2022): newest Microsoft "
        "data centers PUE 1.12.",
        "https://www.windowscentral.com",
    ),
    # -- hardware power -----------------------------------------------------------------
    _codecarbon("codecarbon", "CodeCarbon constants (CPU, RAM, fallback intensities)"),
    _codecarbon("codecarbon_cpu_power", "CodeCarbon cpu_power.csv (CPU TDP by model)"),
    _codecarbon("codecarbon_v2", "CodeCarbon v2 RAM model"),
    _codecarbon("codecarbon_v3", "CodeCarbon v3 RAM model"),
    Source(
        "green_algorithms",
        "Green Algorithms calculator data v3.0 (Lannelongue, Grealey, Inouye)",
        "CC BY 4.0",
        "Lannelongue, L., Grealey, J., Inouye, M., Green Algorithms: Quantifying the Carbon "
        "Footprint of Computation. Adv. Sci. 2021, 2100707. "
        "https://doi.org/10.1002/advs.202100707 (CC BY 4.0).",
        "https://github.com/GreenAlgorithms/green-algorithms-tool",
    ),
    Source(
        "mlco2_impact",
        "ML CO2 Impact calculator data (Lacoste, Luccioni, Schmidt, Dandres 2019)",
        "MIT",
        "Lacoste et al., Quantifying the Carbon Emissions of Machine Learning, "
        "arXiv:1910.09700; data: mlco2/impact (MIT).",
        "https://github.com/mlco2/impact",
    ),
    Source(
        "nvidia_h100pcie_pb",
        "NVIDIA H100 PCIe Product Brief PB-11133-001_v02 (Nov 2022)",
        _CITED,
        "NVIDIA, H100 Tensor Core GPU PCIe Product Brief PB-11133-001_v02 (Nov 2022): TDP 350 W.",
    ),
    Source(
        "mlcommons_inf41",
        "MLCommons inference_results_v4.1, NVIDIA H200-SXM-141GBx8_TRT_MaxQ system description",
        "Apache-2.0",
        "MLCommons inference_results_v4.1 (Apache-2.0): H200 SXM TGP 700 W.",
        "https://github.com/mlcommons/inference_results_v4.1",
    ),
    Source(
        "onestop_blog",
        "One Stop Systems blog (secondary source)",
        _CITED,
        "One Stop Systems blog (secondary source): H200 NVL 600 W.",
    ),
    Source(
        "techpowerup",
        "TechPowerUp GPU Database, A100 SXM4 40 GB",
        _CITED,
        "TechPowerUp GPU Database: A100 SXM4 40 GB rated at 400 W "
        "(techpowerup.com/gpu-specs/a100-sxm4-40-gb.c3506).",
        "https://www.techpowerup.com/gpu-specs/a100-sxm4-40-gb.c3506",
    ),
    Source(
        "amd_mi300x_news",
        "Press reports of AMD's MI300X power figure (secondary source)",
        _CITED,
        "Press reports (Tom's Hardware, syndicated by meterpreter.org; secondary source): AMD "
        "Instinct MI300X up to 750 W.",
    ),
    Source(
        "amd_mi250_news",
        "Press reports of AMD's MI250/MI250X power figure (secondary source)",
        _CITED,
        "Press reports (zexron.com, meterpreter.org; secondary source): AMD Instinct "
        "MI250/MI250X 560 W.",
    ),
)

SOURCES: dict[str, Source] = {s.key: s for s in _SOURCES}


def source_info(key: str) -> Source | None:
    """The source a key names, or None for keys that are not data (``user``, ``default``)."""
    return SOURCES.get(key)


def attributions() -> list[str]:
    """The attribution line of every source the shipped data files use, each line once."""
    from carbon_jupyter.intensity.tables import shipped_source_keys

    shipped = set(shipped_source_keys())
    lines: list[str] = []
    for source in _SOURCES:
        if source.key in shipped and source.attribution not in lines:
            lines.append(source.attribution)
    return lines
