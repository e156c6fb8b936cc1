"""The prediction log: every request that resolved a model, success or failure."""
