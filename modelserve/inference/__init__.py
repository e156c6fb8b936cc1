"""Inference: schema validation, predictors, the per-process model cache and the predict path."""
