"""What a sweep runs: a notebook, a Python script or a command, for one configuration.

Every configuration runs in a fresh process, started here:

- a **script** (``train.py``) runs as ``python train.py --NAME VALUE ...``;
- a **command** (``-- ./bench --fast``) runs as given, with ``--NAME VALUE ...``
  appended;
- a **notebook** (``analysis.ipynb``) runs in a fresh kernel, its parameters
  injected as papermill does: a cell tagged ``injected-parameters`` right after
  the cell tagged ``parameters`` (at the top when there is none). The executed
  notebook is kept beside the sweep's other outputs.

With ``params_as="env"`` the parameters go to the environment instead
(``NAME=VALUE``, the name upper-cased). Every process also gets
``CARBON_JUPYTER_PARAMS`` (the parameters as JSON) and
``CARBON_JUPYTER_METRICS_FILE``, where :func:`carbon_jupyter.log_metric` in
the target writes the metrics it logs.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from carbon_jupyter.errors import ConfigError
from carbon_jupyter.sweeps.axes import Configuration

TargetKind = Literal["notebook", "script", "command"]


@dataclass(frozen=True)
class Target:
    """The thing a sweep runs, and how it is given its parameters."""

    kind: TargetKind
    argv: tuple[str, ...]
    params_as: Literal["args", "env"] = "args"

    @property
    def name(self) -> str:
        """What a person calls it: the notebook's or script's file name, or the command."""
        if self.kind == "command":
            return Path(self.argv[0]).name
        return Path(self.argv[0]).name

    def process(
        self, config: Configuration, metrics_file: Path, output_dir: Path
    ) -> tuple[list[str], dict[str, str]]:
        """The argument list and the added environment of one configuration's process."""
        env = {
            **config.environment(),
            "CARBON_JUPYTER_PARAMS": json.dumps(config.typed_params(), sort_keys=True),
            "CARBON_JUPYTER_METRICS_FILE": str(metrics_file),
        }
        args: list[str] = []
        if self.params_as == "env":
            env.update({name.upper(): value for name, value in config.params})
        else:
            for name, value in config.params:
                args += [f"--{name}", value]
        if self.kind == "notebook":
            out = output_dir / f"{Path(self.argv[0]).stem}-{metrics_file.stem}.ipynb"
            argv = [
                sys.executable, "-m", "carbon_jupyter.sweeps.notebook",
                self.argv[0], str(out), env["CARBON_JUPYTER_PARAMS"],
            ]  # fmt: skip
            return argv, env
        if self.kind == "script":
            return [sys.executable, *self.argv, *args], env
        return [*self.argv, *args], env


def target_of(argv: list[str] | tuple[str, ...], params_as: str = "args") -> Target:
    """A :class:`Target` from what the user typed: a ``.ipynb``, a ``.py`` or a command."""
    if not argv:
        raise ConfigError("give what to run: a notebook (.ipynb), a script (.py) or -- COMMAND")
    if params_as not in ("args", "env"):
        raise ConfigError(f"--params-as {params_as!r}: use args or env")
    first = argv[0]
    kind: TargetKind = "command"
    if first.endswith((".ipynb", ".py")):
        if not os.path.isfile(first):
            raise ConfigError(f"{first}: no such file; give the path of the notebook or script")
        kind = "notebook" if first.endswith(".ipynb") else "script"
        if kind == "notebook" and len(argv) > 1:
            raise ConfigError(f"{first}: a notebook takes its parameters from -p, not arguments")
    return Target(kind, tuple(argv), params_as)  # type: ignore[arg-type]
