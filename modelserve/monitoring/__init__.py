"""Operational metrics (Prometheus)."""
