"""modelserve: put a trained tabular model behind a validated, logged HTTP API."""

__version__ = "0.1.0"
__all__ = ["__version__"]
