"""Live model lifecycle: change notification, warm-up, traffic policies, rollback."""
