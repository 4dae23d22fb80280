"""A sweep's axes and the configurations they span (pure: no processes, no I/O).

A sweep crosses parameter axes (``-p dataset=small,large -p batch=32,128``)
with hardware axes:

``threads``
    how many CPU threads a configuration may use: OpenMP, MKL, OpenBLAS,
    numexpr and torch are told through their environment variables, and the
    process is pinned to that many CPUs (the first ones it is allowed), so the
    thread count and the cores it runs on match.
``gpus``
    which GPUs a configuration sees, as ``CUDA_VISIBLE_DEVICES``: ``none`` (no
    GPU), ``0``, ``0:1`` (GPUs 0 and 1).

Every configuration runs ``repeat`` times; repeats are interleaved (all
configurations once, then all again) so that a slow drift of the machine does
not fall on one configuration only.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from carbon_jupyter.errors import ConfigError

#: Environment variables that cap the thread pools of the usual numeric libraries.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Configuration:
    """One point of a sweep: parameter values and hardware settings.

    ``params`` keeps the values as the user wrote them (text); :meth:`typed_params`
    reads numbers and booleans the way papermill's ``-p`` does.
    """

    params: tuple[tuple[str, str], ...] = ()
    threads: int | None = None
    #: ``None``: the GPUs the machine would give anyway; ``()``: no GPU; else GPU indices.
    gpus: tuple[int, ...] | None = None

    @property
    def key(self) -> str:
        """A stable, readable name: ``dataset=small batch=32 threads=2 gpus=0,1``."""
        parts = [f"{name}={value}" for name, value in self.params]
        if self.threads is not None:
            parts.append(f"threads={self.threads}")
        if self.gpus is not None:
            parts.append(f"gpus={','.join(map(str, self.gpus)) if self.gpus else 'none'}")
        return " ".join(parts) or "default"

    def typed_params(self) -> dict[str, object]:
        """The parameter values as Python values: ``32`` -> 32, ``0.5`` -> 0.5, ``true`` -> True."""
        return {name: typed_value(value) for name, value in self.params}

    def tags(self) -> dict[str, str]:
        """What a run of this configuration is tagged with (``param.*``, ``threads``, ``gpus``)."""
        tags = {f"param.{name}": value for name, value in self.params}
        if self.threads is not None:
            tags["threads"] = str(self.threads)
        if self.gpus is not None:
            tags["gpus"] = ",".join(map(str, self.gpus)) if self.gpus else "none"
        return tags

    def environment(self) -> dict[str, str]:
        """Environment variables that put this configuration's hardware settings in force."""
        env: dict[str, str] = {}
        if self.threads is not None:
            env.update({name: str(self.threads) for name in THREAD_VARIABLES})
        if self.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.gpus))
        return env

    def cpus(self, allowed: Sequence[int]) -> list[int] | None:
        """The CPUs to pin to: the first ``threads`` of ``allowed``; None when not pinned."""
        if self.threads is None:
            return None
        ordered = sorted(allowed)
        if self.threads > len(ordered):
            raise ConfigError(
                f"threads={self.threads} needs {self.threads} CPUs, but this process may use "
                f"{len(ordered)}; use --threads with at most {len(ordered)}"
            )
        return ordered[: self.threads]


@dataclass(frozen=True)
class Axes:
    """The axes of a sweep, as given; :meth:`configurations` spans them."""

    params: tuple[tuple[str, tuple[str, ...]], ...] = ()
    threads: tuple[int, ...] = ()
    gpus: tuple[tuple[int, ...], ...] = ()
    repeat: int = 1

    def configurations(self) -> list[Configuration]:
        """Every combination of the axes, each once, in the order the axes were given."""
        names = [name for name, _ in self.params]
        value_lists = [values for _, values in self.params]
        threads: Sequence[int | None] = self.threads or (None,)
        gpus: Sequence[tuple[int, ...] | None] = self.gpus or (None,)
        out = []
        for values in itertools.product(*value_lists):
            for t in threads:
                for g in gpus:
                    out.append(Configuration(tuple(zip(names, values, strict=True)), t, g))
        return out

    def schedule(self) -> list[tuple[int, Configuration]]:
        """``(repeat, configuration)`` in the order they run: every configuration, then again."""
        configs = self.configurations()
        return [(r, c) for r in range(1, self.repeat + 1) for c in configs]


def parse_param(text: str) -> tuple[str, tuple[str, ...]]:
    """``dataset=small,large`` -> ``("dataset", ("small", "large"))``."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not _NAME.match(name):
        raise ConfigError(
            f"-p {text!r}: write a parameter as NAME=VALUE[,VALUE...], e.g. -p batch=32,128"
        )
    items = tuple(v.strip() for v in values.split(","))
    if not values.strip() or any(not v for v in items):
        raise ConfigError(f"-p {text!r}: {name} needs at least one value, e.g. -p {name}=32,128")
    if len(set(items)) != len(items):
        raise ConfigError(f"-p {text!r}: {name} lists a value twice")
    return name, items


def parse_threads(text: str, cpu_count: int | None = None) -> tuple[int, ...]:
    """``1,2,4`` -> ``(1, 2, 4)``; each a positive count no larger than ``cpu_count``."""
    out = []
    for part in text.split(","):
        try:
            n = int(part.strip())
        except ValueError:
            raise ConfigError(f"--threads {text!r}: give thread counts such as 1,2,4") from None
        if n < 1:
            raise ConfigError(f"--threads {text!r}: a thread count is at least 1")
        if cpu_count is not None and n > cpu_count:
            raise ConfigError(
                f"--threads {text!r}: this machine has {cpu_count} CPUs; use at most {cpu_count}"
            )
        out.append(n)
    if len(set(out)) != len(out):
        raise ConfigError(f"--threads {text!r}: a count is listed twice")
    return tuple(out)


def parse_gpus(text: str) -> tuple[tuple[int, ...], ...]:
    """``none,0,0:1`` -> ``((), (0,), (0, 1))``: GPU subsets, ``:`` joining GPUs of one subset."""
    out: list[tuple[int, ...]] = []
    for part in text.split(","):
        part = part.strip()
        if part.lower() == "none":
            out.append(())
            continue
        try:
            subset = tuple(int(i) for i in part.split(":"))
        except ValueError:
            raise ConfigError(
                f"--gpus {text!r}: give GPU subsets such as none,0,0:1 (':' joins GPUs)"
            ) from None
        if any(i < 0 for i in subset) or len(set(subset)) != len(subset):
            raise ConfigError(f"--gpus {text!r}: {part!r} is not a set of GPU indices")
        out.append(subset)
    if len(set(out)) != len(out):
        raise ConfigError(f"--gpus {text!r}: a subset is listed twice")
    return tuple(out)


def build_axes(
    params: Iterable[str] = (),
    threads: str | None = None,
    gpus: str | None = None,
    repeat: int = 1,
    cpu_count: int | None = None,
) -> Axes:
    """The axes from command-line text (``-p``, ``--threads``, ``--gpus``, ``--repeat``)."""
    parsed = [parse_param(p) for p in params]
    names = [name for name, _ in parsed]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"-p {dup}=... is given twice; list its values once: -p {dup}=a,b")
    if repeat < 1:
        raise ConfigError(f"--repeat {repeat}: repeat each configuration at least once")
    return Axes(
        params=tuple(parsed),
        threads=parse_threads(threads, cpu_count) if threads else (),
        gpus=parse_gpus(gpus) if gpus else (),
        repeat=repeat,
    )


def typed_value(text: str) -> object:
    """A parameter's text as papermill reads ``-p``: numbers, booleans and null, else text."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if json.dumps(value) not in ("NaN", "Infinity", "-Infinity") else text
