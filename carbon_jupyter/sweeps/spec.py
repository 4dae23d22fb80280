"""A sweep as a document: what to run and over which axes, to hand to a team server.

A sweep run here reads its target from disk; a sweep submitted to a server
(``carbon-jupyter sweep --server URL``) carries it: a script's or notebook's
text travels in the :class:`SweepSpec`, and each host that runs a
configuration writes it to a fresh folder first (:meth:`SweepSpec.materialize`).
A command (``-- ./bench --fast``) travels as its argument list and must exist
on the hosts that run it.

The axes travel as the command line writes them (``dataset=small,large``,
``1,2,4``, ``none,0,0:1``), so a sweep means the same on every host.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.sweeps.axes import Axes, Configuration, build_axes
from carbon_jupyter.sweeps.target import Target, TargetKind

#: The largest script or notebook a sweep carries, in characters.
MAX_CONTENT_CHARS = 2_000_000
PHASES = ("train", "inference", "other")


@dataclass(frozen=True)
class SweepSpec:
    """Everything a host needs to run any configuration of a sweep."""

    kind: TargetKind
    #: The script's or notebook's file name (``train.py``), or the command's program.
    name: str
    #: The script's or notebook's text; None for a command.
    content: str | None = None
    #: A command's arguments (``["./bench", "--fast"]``), or a script's own arguments.
    argv: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    threads: str | None = None
    gpus: str | None = None
    repeat: int = 1
    phase: str | None = None
    items: int | None = None
    label: str | None = None
    metric: str | None = None
    params_as: Literal["args", "env"] = "args"
    #: Tracker options every run gets (``interval``, ``country``, ``pue``, ...).
    options: Mapping[str, Any] = field(default_factory=dict)

    def axes(self, cpu_count: int | None = None) -> Axes:
        """The axes; raises ConfigError naming the bad one."""
        return build_axes(self.params, self.threads, self.gpus, self.repeat, cpu_count)

    def configuration(self, key: str) -> Configuration:
        """The configuration called ``key`` (``dataset=small threads=2``)."""
        for config in self.axes().configurations():
            if config.key == key:
                return config
        raise ConfigError(f"sweep has no configuration {key!r}")

    def target_name(self) -> str:
        return Path(self.name).name

    def materialize(self, folder: Path) -> Target:
        """The target, its file written into ``folder`` when it travels as text."""
        if self.kind == "command":
            return Target("command", self.argv, self.params_as)
        path = folder / self.target_name()
        path.write_text(self.content or "", encoding="utf-8")
        return Target(self.kind, (str(path), *self.argv), self.params_as)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": {
                "kind": self.kind,
                "name": self.name,
                "content": self.content,
                "argv": list(self.argv),
            },
            "params": list(self.params),
            "threads": self.threads,
            "gpus": self.gpus,
            "repeat": self.repeat,
            "phase": self.phase,
            "items": self.items,
            "label": self.label,
            "metric": self.metric,
            "params_as": self.params_as,
            "options": dict(self.options),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SweepSpec:
        target = doc.get("target") or {}
        return cls(
            kind=cast(TargetKind, target.get("kind", "script")),
            name=str(target.get("name", "")),
            content=target.get("content"),
            argv=tuple(target.get("argv") or ()),
            params=tuple(doc.get("params") or ()),
            threads=doc.get("threads"),
            gpus=doc.get("gpus"),
            repeat=int(doc.get("repeat") or 1),
            phase=doc.get("phase"),
            items=doc.get("items"),
            label=doc.get("label"),
            metric=doc.get("metric"),
            params_as=cast(Literal["args", "env"], doc.get("params_as") or "args"),
            options=dict(doc.get("options") or {}),
        )


def spec_of(
    target: Target,
    params: Sequence[str] = (),
    *,
    threads: str | None = None,
    gpus: str | None = None,
    repeat: int = 1,
    phase: str | None = None,
    items: int | None = None,
    label: str | None = None,
    metric: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> SweepSpec:
    """The document for a target on this machine: a script's or notebook's text read in."""
    build_axes(params, threads, gpus, repeat)  # the same one-line errors as a local sweep
    content = None
    argv: tuple[str, ...] = target.argv
    name = target.name
    if target.kind != "command":
        path = Path(target.argv[0])
        if os.path.getsize(path) > MAX_CONTENT_CHARS:
            raise ConfigError(
                f"{path}: larger than {MAX_CONTENT_CHARS // 1_000_000} MB; a submitted sweep "
                "carries its script or notebook, so keep data beside it on the hosts instead"
            )
        content = path.read_text(encoding="utf-8")
        argv = target.argv[1:]
        name = path.name
    return SweepSpec(
        kind=target.kind,
        name=name,
        content=content,
        argv=argv,
        params=tuple(params),
        threads=threads,
        gpus=gpus,
        repeat=repeat,
        phase=phase,
        items=items,
        label=label,
        metric=metric,
        params_as=target.params_as,
        options=dict(options or {}),
    )
