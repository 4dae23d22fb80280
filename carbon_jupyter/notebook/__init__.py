"""The notebook front door: ``%carbon`` and ``%%carbon`` (:mod:`~carbon_jupyter.notebook.magics`).

Thin: parsing options and showing results; the measuring is done by
:class:`carbon_jupyter.measure.tracker.Tracker`.
"""
