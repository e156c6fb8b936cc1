"""What the registration sandbox costs: opening and probing an upload in-process (as before)
against in a child forked from the sandbox's zygote, warm (the zygote already started) and cold
(a zygote started for this registration: an interpreter start, the imports and the warm-up).
Prints a table; not run in CI.

    python bench/sandbox_cost.py [repeats]
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from collections.abc import Callable

import joblib
import skops.io
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from modelserve.registry import probe
from modelserve.registry.loaders import load_artifact, serving_form
from modelserve.registry.sandbox import _ZYGOTE, SandboxLimits, vet
from modelserve.registry.schemas import InputSchema

SCHEMA = InputSchema.model_validate(
    {"features": [{"name": f"f{i}", "type": "number"} for i in range(4)]}
)


def _artifacts() -> dict[str, tuple[bytes, str]]:
    x, y = load_iris(return_X_y=True)
    models = {
        "logistic": LogisticRegression(max_iter=500).fit(x, y),
        "forest-100": RandomForestClassifier(100, random_state=0).fit(x, y),
    }
    out: dict[str, tuple[bytes, str]] = {}
    for name, model in models.items():
        out[f"{name} skops"] = (skops.io.dumps(model), "skops")
        buffer = io.BytesIO()
        joblib.dump(model, buffer, compress=3)
        out[f"{name} joblib"] = (buffer.getvalue(), "joblib")
    return out


def _in_process(data: bytes, fmt: str) -> None:
    loaded = load_artifact(data, fmt)  # type: ignore[arg-type]
    probe.describe_output(loaded.estimator, SCHEMA)
    if fmt == "skops":
        serving_form(loaded.estimator)


def _timed(run: Callable[[], object], repeats: int, before: Callable[[], None]) -> float:
    samples = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def _row(name: str, data: bytes, fmt: str, repeats: int) -> str:
    limits = SandboxLimits()

    def check() -> None:
        vet(data, fmt, SCHEMA, limits)

    inproc = _timed(lambda: _in_process(data, fmt), repeats, lambda: None)
    check()  # starts the zygote
    warm = _timed(check, repeats, lambda: None)
    cold = _timed(check, repeats, _ZYGOTE.stop)
    return f"{name:<20} {inproc:>11.0f} {warm:>11.0f} {cold:>11.0f}"


def main() -> None:
    """Print median milliseconds per registration check, by artifact and mode."""
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    print(f"{'artifact':<20} {'in-process':>11} {'zygote warm':>11} {'zygote cold':>11}  (ms)")
    for name, (data, fmt) in _artifacts().items():
        print(_row(name, data, fmt, repeats))


if __name__ == "__main__":
    main()
