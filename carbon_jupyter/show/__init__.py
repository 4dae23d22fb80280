"""Showing: every view of a run, built from the same stored records.

- :mod:`~carbon_jupyter.show.plots`: Bokeh figures as pure functions of runs and samples,
  shared by the notebook, the exported reports and the team server's dashboard.
- :mod:`~carbon_jupyter.show.format`: numbers and summaries as text.
- :mod:`~carbon_jupyter.show.display`, :mod:`~carbon_jupyter.show.live`,
  :mod:`~carbon_jupyter.show.livewidget`, :mod:`~carbon_jupyter.show.embed`,
  :mod:`~carbon_jupyter.show.frontend`: putting them in a notebook's output (static,
  live, and which frontend is being written to).
"""
