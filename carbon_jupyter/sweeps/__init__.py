"""Sweeps: one target run over parameter and hardware configurations, and compared.

- :mod:`~carbon_jupyter.sweeps.axes`: the axes (``-p``, ``--threads``, ``--gpus``,
  ``--repeat``) and the configurations they span.
- :mod:`~carbon_jupyter.sweeps.compare`: per-configuration figures with their
  spread, the Pareto fronts (CO2 against time, CO2 against a metric) and the
  one-line answer.
"""
