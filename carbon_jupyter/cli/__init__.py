"""The command-line front door: ``carbon-jupyter`` (:mod:`~carbon_jupyter.cli.main`)."""

from carbon_jupyter.cli.main import main

__all__ = ["main"]
