"""Prometheus metrics of one server process (prediction log, model cache, adaptive batching,
shadow runs), collected from live objects at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from modelserve.inference.service import InferenceService
from modelserve.lifecycle.watcher import RegistryWatcher
from modelserve.predictions.writer import LogWriter

PREFIX = "modelserve_prediction_log"


class PredictionLogCollector(Collector):
    """The prediction-log writer's queue and counters."""

    def __init__(self, writer: LogWriter) -> None:
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        """One sample per metric, read now."""
        s = self.writer.stats()
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_depth", "Records queued in memory, not yet written.", s.queue_depth
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_capacity", "Records the queue holds before spilling.", s.queue_capacity
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_spill_pending",
            "Records in this process's spill file, waiting to be replayed.",
            s.spill_pending,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_journal_pending",
            "Records in this process's journal, not yet committed nor spilled.",
            s.journal_pending,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_writer_up", "1 while the writer thread runs, else 0.", int(s.writer_alive)
        )
        counters = (
            ("written", "Records written to the database from the queue.", s.written),
            ("copied", "Of those, records written with COPY (PostgreSQL).", s.copied),
            (
                "spilled",
                "Records appended to the local spill file (queue full or database down).",
                s.spilled,
            ),
            ("replayed", "Spilled records replayed into the database.", s.replayed),
            (
                "adopted",
                "Records replayed from the spill files of dead processes.",
                s.adopted,
            ),
            (
                "rejected",
                "Records the database refused (kept in the spill dir's rejected/ folder).",
                s.rejected,
            ),
            (
                "escaped",
                "Records stored in their escaped form (values the database could not hold).",
                s.escaped,
            ),
            (
                "writer_restarts",
                "Times the writer thread failed and went on, or was started again.",
                s.writer_restarts,
            ),
            (
                "failed_batches",
                "Batch writes that failed (the database was unavailable).",
                s.failed_batches,
            ),
        )
        for name, documentation, value in counters:
            yield CounterMetricFamily(f"{PREFIX}_{name}", documentation, value)
        yield SummaryMetricFamily(
            f"{PREFIX}_batch_seconds",
            "Time to write one batch (successful writes).",
            count_value=s.batches,
            sum_value=s.batch_seconds,
        )


class InferenceCollector(Collector):
    """The registry generation, model cache, adaptive batching (per version and runtime) and
    shadow runs."""

    def __init__(self, inference: InferenceService, watcher: RegistryWatcher) -> None:
        self.inference = inference
        self.watcher = watcher

    def collect(self) -> Iterator[Metric]:
        """One sample per metric (and per batcher), read now."""
        yield GaugeMetricFamily(
            "modelserve_registry_generation",
            "Registry changes this process has caught up with (compare across processes).",
            self.watcher.generation_seen,
        )
        cache = self.inference.cache
        yield GaugeMetricFamily("modelserve_models_loaded", "Versions loaded now.", len(cache))
        yield CounterMetricFamily("modelserve_model_loads", "Versions loaded.", cache.loads)
        yield CounterMetricFamily(
            "modelserve_predictions_inline",
            "Requests served on the event loop (small, for a model cheaper than INLINE_MAX_MS).",
            self.inference.served_inline,
        )
        shadows = self.inference.shadows
        runs = CounterMetricFamily(
            "modelserve_shadow_runs",
            "Shadow predictions run (completed) or skipped because the backlog was full.",
            labels=["outcome"],
        )
        runs.add_metric(["completed"], shadows.completed if shadows else 0)
        runs.add_metric(["skipped"], shadows.skipped if shadows else 0)
        yield runs
        warnings = CounterMetricFamily(
            "modelserve_input_warnings",
            "Values served though outside the range seen in training, per model and feature.",
            labels=["model", "feature"],
        )
        for (model, feature), count in sorted(self.inference.input_warnings.snapshot().items()):
            warnings.add_metric([model, feature], count)
        yield warnings
        yield from self._batching()

    def _batching(self) -> Iterator[Metric]:
        labels = ["version_id", "runtime"]
        families = {
            name: CounterMetricFamily(f"modelserve_batching_{name}", doc, labels=labels)
            for name, doc in (
                ("requests", "Requests that went through adaptive batching."),
                ("rows", "Rows of those requests."),
                ("model_calls", "Model calls made for them."),
                ("merged_calls", "Model calls that merged two or more requests."),
                ("fallbacks", "Merged calls that failed and were re-run request by request."),
            )
        }
        largest = GaugeMetricFamily(
            "modelserve_batching_largest_batch", "Most requests merged in one call.", labels=labels
        )
        largest_rows = GaugeMetricFamily(
            "modelserve_batching_largest_rows", "Most rows in one model call.", labels=labels
        )
        for (version_id, runtime), stats in sorted(self.inference.batchers.stats().items()):
            key = [str(version_id), runtime]
            families["requests"].add_metric(key, stats.requests)
            families["rows"].add_metric(key, stats.rows)
            families["model_calls"].add_metric(key, stats.model_calls)
            families["merged_calls"].add_metric(key, stats.merged_calls)
            families["fallbacks"].add_metric(key, stats.fallbacks)
            largest.add_metric(key, stats.largest_batch)
            largest_rows.add_metric(key, stats.largest_rows)
        yield from families.values()
        yield largest
        yield largest_rows


def build_registry(
    writer: LogWriter, inference: InferenceService, watcher: RegistryWatcher
) -> CollectorRegistry:
    """A registry of this app's metrics (not the global default one: a process, the tests
    above all, may run several apps)."""
    registry = CollectorRegistry()
    registry.register(PredictionLogCollector(writer))
    registry.register(InferenceCollector(inference, watcher))
    return registry
