"""Per-process cache of loaded model versions, keyed by version id and runtime.

Versions are immutable, but a model's runtime (scikit-learn or ONNX Runtime) can change: each
runtime a version is asked for is its own entry, so a switch takes effect on the next request
and in-flight requests finish on the entry they hold.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelserve.inference.intake import MatrixRules
from modelserve.inference.onnx_predictor import OnnxPredictor
from modelserve.inference.predictor import Predictor
from modelserve.inference.validation import CompiledValidator
from modelserve.registry.schemas import Runtime

if TYPE_CHECKING:
    from modelserve.registry.service import ResolvedVersion

CacheKey = tuple[int, str]
"""(version id, runtime asked for)."""


def cache_key(version: ResolvedVersion) -> CacheKey:
    """The cache entry serving ``version`` with its model's current runtime."""
    return (version.version_id, version.serving.runtime)


class PredictCost:
    """How long a version's recent predictions took, by size: a moving average of the CPU
    seconds a ``predict`` call took, one for requests of at most ``SMALL_VALUES`` values and one
    for larger ones up to ``INLINE_MAX_VALUES`` (each unknown until measured)."""

    __slots__ = ("_averages",)
    _WEIGHT = 0.1

    def __init__(self) -> None:
        self._averages = [float("inf"), float("inf")]  # small, large

    def add(self, seconds: float, *, large: bool = False) -> None:
        """Count one measured call (the first of its size sets the average)."""
        average = self._averages[large]
        if average == float("inf"):
            self._averages[large] = seconds
        else:
            self._averages[large] = average + self._WEIGHT * (seconds - average)

    def of(self, *, large: bool) -> float:
        """The average for requests of this size (inf until one was measured)."""
        return self._averages[large]


@dataclass(frozen=True)
class LoadedVersion:
    """A ready-to-serve version: its compiled validator and its predictor."""

    version_id: int
    validator: CompiledValidator
    predictor: Predictor | OnnxPredictor
    runtime: Runtime = "sklearn"
    """What runs it: onnx only when asked for and the version has a twin."""
    rules: MatrixRules | None = None
    """The schema's rules over a whole matrix, for ``intake.validate`` (numeric schemas)."""
    cost: PredictCost = field(default_factory=PredictCost, compare=False)
    """What its small predictions cost, which decides whether they may run on the event loop."""


class ModelCache:
    """LRU of loaded versions; each entry is loaded at most once at a time per process."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[CacheKey, LoadedVersion] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[CacheKey, threading.Lock] = {}
        self.loads = 0

    def get(self, key: CacheKey, load: Callable[[], LoadedVersion]) -> LoadedVersion:
        """The cached entry, loading it with ``load`` when absent."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._entries.get(key)
            if entry is None:
                entry = load()
                self._store(key, entry)
        return entry

    def _store(self, key: CacheKey, entry: LoadedVersion) -> None:
        with self._lock:
            self.loads += 1
            self._entries[key] = entry
            self._entries.move_to_end(key)
            self._loading.pop(key, None)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def evict(self, version_id: int) -> bool:
        """Forget one version (under every runtime); whether it was loaded."""
        with self._lock:
            keys = [key for key in self._entries if key[0] == version_id]
            for key in keys:
                del self._entries[key]
            return bool(keys)

    def clear(self) -> None:
        """Forget every loaded version."""
        with self._lock:
            self._entries.clear()
