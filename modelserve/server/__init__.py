"""Running the API: Uvicorn in one process, or a Gunicorn master with Uvicorn workers.

``workers`` picks the count and runs Gunicorn from code for ``modelserve serve --workers N``;
``worker`` is the Uvicorn worker class; ``gunicorn_conf`` is the same configuration for a plain
``gunicorn -c python:modelserve.server.gunicorn_conf`` (read by Gunicorn only, never imported by
the package)."""
