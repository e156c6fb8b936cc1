"""Shared plumbing: database, errors, responses, time."""
