"""The ``modelserve`` command line: Typer commands over the same services as the API."""
