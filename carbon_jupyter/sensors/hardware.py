"""What the machine is, and the shipped power figures for it.

* :func:`cpu_model_name` - the CPU brand string (``/proc/cpuinfo`` ``model name``,
  else what :func:`platform.processor` says); :func:`cpuinfo_field` any other
  field of ``/proc/cpuinfo`` (``flags``, ``CPU part``).
* :func:`lookup_tdp_w` - the thermal design power of a CPU or GPU model from the
  table shipped in ``carbon_jupyter/data/hardware_power.csv``, with the key of
  the source it comes from (see ``DATA-SOURCES``/``SOURCES.md``).
* :func:`constant_value` - one figure of ``carbon_jupyter/data/constants.csv``
  (RAM watts per GB, CPU watts per core...), picked by key and source.

Model names are matched after normalisation: case, ``(R)``/``(TM)`` marks,
``CPU``/``Processor`` words, the clock (``@ 2.50GHz``), the core count
(``64-Core``), the generation prefix (``11th Gen``) and integrated graphics
(``w/ Radeon Graphics``) are dropped, so ``Intel(R) Xeon(R) Platinum 8259CL CPU
@ 2.50GHz`` finds ``Intel Xeon Platinum 8259CL``. A table row also matches when
the two differ only in vendor or family words (``NVIDIA``, ``Tesla``, ``Xeon``) or
word order, never when one adds a model number or a tier (``Apple M1 Pro`` is not
``Apple M1``), and a name without a model number (``AMD EPYC``) matches nothing.

Where one model has several rows the figure comes from, in this order: a vendor
or other single document, Green Algorithms, ML CO2 Impact, CodeCarbon.
"""

from __future__ import annotations

import csv
import functools
import os
import platform
import re
from importlib import resources
from pathlib import Path

from carbon_jupyter.errors import ConfigError

#: Source keys in increasing order of trust; any other key is a single document.
_SOURCE_RANK = {"codecarbon_cpu_power": 0, "mlco2_impact": 1, "green_algorithms": 2}
_VENDOR_DOCUMENT_RANK = 3

#: Words a brand string may carry beyond a table row's words and still match it.
_HARMLESS_WORDS = frozenset(
    {
        "intel", "amd", "nvidia", "apple", "genuine", "genuineintel", "authenticamd",
        "xeon", "core", "epyc", "ryzen", "threadripper", "tesla", "geforce", "quadro",
        "instinct", "radeon", "scalable",
    }
)  # fmt: skip

_MARKS = re.compile(r"\((?:r|tm|c)\)|[®™]", re.IGNORECASE)
_CLOCK = re.compile(r"@.*$")
_GRAPHICS = re.compile(r"\s(?:w/|with)\s.*$")
_GENERATION = re.compile(r"\b\d+(?:st|nd|rd|th) gen(?:eration)?\b")
_CORES = re.compile(r"\b\d+ cores?\b")
_FILLER = re.compile(r"\b(?:cpu|processor)\b")
_VERSION = re.compile(r"\s(v\d)\b")
_SIZE = re.compile(r"\b(\d+) (gb)\b")


def normalise_model_name(name: str) -> str:
    """A hardware model name reduced to lower-case words, for matching (see module doc)."""
    text = _MARKS.sub(" ", name).lower()
    text = _CLOCK.sub(" ", text)
    text = _GRAPHICS.sub(" ", text)
    text = re.sub(r"[-_,/()]", " ", text)
    text = _GENERATION.sub(" ", text)
    text = _CORES.sub(" ", text)
    text = _FILLER.sub(" ", text)
    text = " ".join(text.split())
    text = _VERSION.sub(r"\1", text)
    return _SIZE.sub(r"\1\2", text)


def _match_key(name: str) -> frozenset[str]:
    """The words that identify a model: normalised, less vendor and family words."""
    return frozenset(w for w in normalise_model_name(name).split() if w not in _HARMLESS_WORDS)


@functools.lru_cache(maxsize=1)
def _tdp_table() -> dict[tuple[str, frozenset[str]], tuple[float, str, int]]:
    """(kind, match key) -> (watts, source key, rank); the best-ranked row per model."""
    table: dict[tuple[str, frozenset[str]], tuple[float, str, int]] = {}
    text = (resources.files("carbon_jupyter") / "data" / "hardware_power.csv").read_text()
    for row in csv.DictReader(text.splitlines()):
        try:
            watts = float(row["tdp_watts"])
        except (TypeError, ValueError):
            continue
        key = (row["kind"].strip().lower(), _match_key(row["model"]))
        rank = _SOURCE_RANK.get(row["source"], _VENDOR_DOCUMENT_RANK)
        if key not in table or rank > table[key][2]:
            table[key] = (watts, row["source"], rank)
    return table


def lookup_tdp_w(kind: str, model_name: str) -> tuple[float, str] | None:
    """TDP in watts of ``model_name`` (a ``cpu``, ``gpu`` or ``tpu``) and its source key.

    None when the table has no row for the model. See the module docstring for
    how names are matched.
    """
    key = _match_key(model_name)
    if not any(ch.isdigit() for word in key for ch in word):
        return None
    found = _tdp_table().get((kind.strip().lower(), key))
    return None if found is None else (found[0], found[1])


def _cpuinfo_fields(cpuinfo: str | os.PathLike[str]) -> list[tuple[str, str]]:
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return []
    fields = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.append((key.strip().lower(), value.strip()))
    return fields


def cpuinfo_field(name: str, cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> str:
    """The first value of the ``/proc/cpuinfo`` field ``name`` (``flags``, ``CPU part``...); "".

    Field names are matched without regard to case.
    """
    wanted = name.strip().lower()
    for key, value in _cpuinfo_fields(cpuinfo):
        if key == wanted and value:
            return value
    return ""


def cpu_model_name(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> str:
    """The CPU brand string, e.g. ``AMD EPYC 7763 64-Core Processor``; "" when unknown."""
    return cpuinfo_field("model name", cpuinfo) or platform.processor().strip()


def cpu_socket_count(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> int:
    """Number of CPU packages (distinct ``physical id`` in ``/proc/cpuinfo``), at least 1."""
    ids = {value for key, value in _cpuinfo_fields(cpuinfo) if key == "physical id"}
    return max(1, len(ids))


@functools.lru_cache(maxsize=1)
def _constants() -> dict[tuple[str, str], float]:
    text = (resources.files("carbon_jupyter") / "data" / "constants.csv").read_text()
    table: dict[tuple[str, str], float] = {}
    for row in csv.DictReader(text.splitlines()):
        try:
            table.setdefault((row["key"], row["source"]), float(row["value"]))
        except (TypeError, ValueError):
            continue
    return table


def constant_value(key: str, source: str) -> float:
    """The figure ``key`` as given by ``source`` in ``constants.csv`` (KeyError if absent)."""
    return _constants()[(key, source)]


def env_positive_float(name: str) -> float | None:
    """The environment variable ``name`` as a positive number; None when unset or empty.

    Raises ConfigError naming the variable when it is set to anything else.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(
            f"{name}={raw!r} is not a positive number; set it to a value such as 150, "
            f"or unset it to use the built-in figure"
        )
    return value
