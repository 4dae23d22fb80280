"""Run one notebook with injected parameters in a fresh kernel, as papermill does.

``python -m carbon_jupyter.sweeps.notebook IN.ipynb OUT.ipynb PARAMS_JSON``:
the parameters become a code cell tagged ``injected-parameters``, placed right
after the cell tagged ``parameters`` (at the top when there is none, and in
place of an injected cell left by an earlier run), then every cell runs in a
fresh kernel of the notebook's own kernelspec. The executed notebook is written
to OUT, also when a cell fails; a failing cell ends the process with status 1
and one line naming the cell.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

INJECTED_TAG = "injected-parameters"
PARAMETERS_TAG = "parameters"


def parameter_source(params: Mapping[str, object]) -> str:
    """The injected cell's code: one assignment per parameter, as Python literals."""
    lines = ["# Parameters"]
    lines += [f"{name} = {value!r}" for name, value in params.items()]
    return "\n".join(lines) + "\n"


def inject(nb: Any, params: Mapping[str, object]) -> Any:
    """``nb`` with the parameters cell injected (``nb`` is an nbformat notebook node)."""
    import importlib

    nbformat: Any = importlib.import_module("nbformat")
    cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    cell = nbformat.v4.new_code_cell(parameter_source(params))
    cell.metadata["tags"] = [INJECTED_TAG]
    at = next(
        (i + 1 for i, c in enumerate(cells) if PARAMETERS_TAG in c.metadata.get("tags", [])), 0
    )
    nb.cells = [*cells[:at], cell, *cells[at:]]
    return nb


def main(argv: list[str]) -> int:
    import importlib

    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nbformat: Any = importlib.import_module("nbformat")  # its functions carry no types
    source, target, params_json = argv
    nb = inject(nbformat.read(source, as_version=4), json.loads(params_json))
    kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
    client = NotebookClient(nb, kernel_name=kernel, timeout=None, allow_errors=False)
    try:
        client.execute()
    except CellExecutionError as exc:
        nbformat.write(nb, target)
        name = getattr(exc, "ename", "error")
        value = getattr(exc, "evalue", "")
        print(f"{source}: a cell failed: {name}: {value}".rstrip(": "), file=sys.stderr)
        return 1
    nbformat.write(nb, target)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
