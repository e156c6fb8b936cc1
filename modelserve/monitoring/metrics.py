"""Prometheus metrics of one server process, collected from live objects at scrape time."""

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
        counters = (
            ("written", "Records written to the database from the queue.", s.written),
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


def build_registry(writer: LogWriter) -> CollectorRegistry:
    """A registry of this app's metrics (not the global default one: a process, the tests
    above all, may run several apps)."""
    registry = CollectorRegistry()
    registry.register(PredictionLogCollector(writer))
    return registry
