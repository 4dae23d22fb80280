"""Measuring: turning sensor readings into a run's energy.

- :mod:`~carbon_jupyter.measure.tracker`: ``track()`` and :class:`Tracker`, the one
  object every front door (magics, CLI, Python API) drives.
- :mod:`~carbon_jupyter.measure.sampler`: the background thread that reads the sensors.
- :mod:`~carbon_jupyter.measure.meter`: one device's counter or power readings into joules,
  with glitches, wraps and gaps judged and reported.
- :mod:`~carbon_jupyter.measure.integrate`: the pure maths (counter steps, trapezoids).
- :mod:`~carbon_jupyter.measure.device_health`: devices lost in one run, named in the next.

The hardware itself is read in :mod:`carbon_jupyter.sensors`.
"""
