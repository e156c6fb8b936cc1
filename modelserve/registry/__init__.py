"""Model registry: named models, immutable versions, movable aliases, safe artifact loading."""
