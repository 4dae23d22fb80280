"""The team server (``carbon-jupyter serve``, the ``server`` extra): a team's runs in one place.

``app`` builds the ASGI application; ``api/`` holds the routes and the
request shapes; ``ingest`` writes what clients send, ``queries`` reads it
back (for the API and the dashboard); ``auth`` resolves tokens; ``metrics``
serves Prometheus; ``db/`` holds the schema, the engine and the Alembic
migrations; ``dashboard/`` is the browser view at ``/``.
"""
