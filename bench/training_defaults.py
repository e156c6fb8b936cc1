"""Which default algorithm for ``modelserve train``: every algorithm on scikit-learn's bundled
data sets (and small samples of them) with the cross-validation ``train`` runs, as a table.

    python bench/training_defaults.py [--folds 5]

ROC AUC for two classes, balanced accuracy for more, R² for regression (higher is better).
Slow on a busy machine (minutes): each cell is a full cross-validation.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Iterator
from typing import Any

import pandas as pd
from sklearn import datasets

from modelserve.training.estimators import available_algorithms
from modelserve.training.pipeline import train

SAMPLES = {"breast_cancer": (60, 150), "diabetes": (60, 150)}


def frames() -> Iterator[tuple[str, pd.DataFrame, bool]]:
    """(name, frame with a ``target`` column, is regression)."""
    loaders: dict[str, Any] = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "diabetes": datasets.load_diabetes,
    }
    for name, loader in loaders.items():
        frame: pd.DataFrame = loader(as_frame=True).frame
        regression = name == "diabetes"
        yield f"{name} ({len(frame)})", frame, regression
        for rows in SAMPLES.get(name, ()):
            sample = frame.sample(n=rows, random_state=1).reset_index(drop=True)
            yield f"{name} ({rows} sampled)", sample, regression


def score(frame: pd.DataFrame, algorithm: str, regression: bool, folds: int) -> str:
    if algorithm == "logistic" and regression:
        algorithm = "linear"
    model = train(frame, "target", algorithm=algorithm, folds=folds)  # type: ignore[arg-type]
    metrics = model.metrics
    key = "r2" if regression else ("roc_auc" if "roc_auc" in metrics else "balanced_accuracy")
    return f"{metrics[key]['mean']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    algorithms = [a for a in available_algorithms() if a != "linear"]
    print("| data set | " + " | ".join(algorithms) + " |")
    print("| --- " * (len(algorithms) + 1) + "|")
    for name, frame, regression in frames():
        cells = [score(frame, a, regression, args.folds) for a in algorithms]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
