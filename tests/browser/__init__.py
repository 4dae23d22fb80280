"""Tests that drive a real JupyterLab in headless Chromium (marked ``browser``)."""
