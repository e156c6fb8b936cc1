"""Train scikit-learn pipelines from tabular data: schema inference, pipelines and metrics."""
