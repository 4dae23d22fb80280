"""The HTTP API under ``/api/v1``: request and answer shapes, and the routes."""
