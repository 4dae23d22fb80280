"""The build hook of carbon-jupyter: the JupyterLab sidebar, built with npm where Node is.

The sidebar (``labextension/``, TypeScript) is built by hatch-jupyter-builder's
``npm_builder`` into ``carbon_jupyter/labextension`` and shipped in the wheel as
shared data (``share/jupyter/labextensions/carbon-jupyter``), so installing a
built wheel needs no Node. Building from a checkout:

* with ``npm`` on the PATH the build is hatch-jupyter-builder's, unchanged
  (a wheel skips npm where the sidebar is already built: ``skip-if-exists``
  in ``pyproject.toml``);
* without ``npm`` but with the sidebar already built (``pip install -e .``
  builds it), that sidebar is shipped as it is;
* without ``npm`` (or with ``HATCH_JUPYTER_BUILDER_SKIP_NPM=1``) and nothing
  built, the package is built without the sidebar and one line says so (``pip
  install -v`` shows it): the magics, the CLI, ``carbon-jupyter demo`` and the
  team server do not need it.

The options of ``[tool.hatch.build.hooks.custom]`` are hatch-jupyter-builder's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import hatch_jupyter_builder.plugin as jupyter_builder

#: Where npm builds the sidebar, and where the wheel puts it for JupyterLab to find.
SIDEBAR_DIR = "carbon_jupyter/labextension"
SIDEBAR_SHARE = "share/jupyter/labextensions/carbon-jupyter"
NO_NPM = (
    "carbon-jupyter: npm not found, so this build has no JupyterLab sidebar (everything else "
    "works); for the sidebar install Node.js 18+ and build again, or install a released wheel"
)


class SidebarBuildHook(jupyter_builder.JupyterBuildHook):
    """hatch-jupyter-builder's hook; where there is no npm, the package without the sidebar."""

    def _npm_missing(self) -> bool:
        npm = self.config.get("build-kwargs", {}).get("npm", ["npm"])
        command = npm[0] if isinstance(npm, list) else npm
        skipped = os.environ.get("HATCH_JUPYTER_BUILDER_SKIP_NPM") == "1"
        return skipped or shutil.which(command) is None

    def _sidebar_built(self) -> bool:
        return (Path(self.root) / SIDEBAR_DIR / "package.json").is_file()

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name in ("wheel", "sdist") and self._npm_missing():
            built = self.config.get("skip-if-exists", [])
            if not all((Path(self.root) / path).is_file() for path in built):
                self.app.display_warning(NO_NPM)
                return
            # Built before: shipped as it is, since it cannot be rebuilt without npm.
        else:
            super().initialize(version, build_data)
        if self.target_name == "wheel" and self._sidebar_built():
            build_data["shared_data"].update(
                {
                    SIDEBAR_DIR: SIDEBAR_SHARE,
                    "labextension/install.json": f"{SIDEBAR_SHARE}/install.json",
                }
            )
