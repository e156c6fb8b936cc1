"""Per-process cache of loaded model versions, keyed by version id (versions are immutable)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from modelserve.inference.predictor import Predictor
from modelserve.inference.validation import CompiledValidator


@dataclass(frozen=True)
class LoadedVersion:
    """A ready-to-serve version: its compiled validator and its predictor."""

    version_id: int
    validator: CompiledValidator
    predictor: Predictor


class ModelCache:
    """LRU of loaded versions; each version is loaded at most once at a time per process."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[int, LoadedVersion] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}
        self.loads = 0

    def get(self, version_id: int, load: Callable[[], LoadedVersion]) -> LoadedVersion:
        """The cached version, loading it with ``load`` when absent."""
        with self._lock:
            entry = self._entries.get(version_id)
            if entry is not None:
                self._entries.move_to_end(version_id)
                return entry
            key_lock = self._loading.setdefault(version_id, threading.Lock())
        with key_lock:
            with self._lock:
                entry = self._entries.get(version_id)
            if entry is None:
                entry = load()
                self._store(entry)
        return entry

    def _store(self, entry: LoadedVersion) -> None:
        with self._lock:
            self.loads += 1
            self._entries[entry.version_id] = entry
            self._entries.move_to_end(entry.version_id)
            self._loading.pop(entry.version_id, None)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def __contains__(self, version_id: object) -> bool:
        with self._lock:
            return version_id in self._entries

    def evict(self, version_id: int) -> bool:
        """Forget one version; whether it was loaded."""
        with self._lock:
            return self._entries.pop(version_id, None) is not None

    def clear(self) -> None:
        """Forget every loaded version."""
        with self._lock:
            self._entries.clear()
