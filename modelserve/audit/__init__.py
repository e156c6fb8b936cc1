"""The security audit log."""
