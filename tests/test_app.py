"""The app's lifespan: what it sets up for the life of the process, and gives back."""

from __future__ import annotations

import gc

import pytest
from factories import register_iris
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelserve.app import create_app
from modelserve.config import Settings


def test_the_startup_heap_is_frozen_while_serving_and_released_after(settings: Settings) -> None:
    # Full collections walking the modules and models made the 100-row p99 tail (bench/).
    gc.unfreeze()
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 100_000
    assert gc.get_freeze_count() == 0


def test_the_model_list_does_not_claim_a_model_has_no_versions(client: TestClient) -> None:
    register_iris(client)
    register_iris(client)
    [listed] = client.get("/v1/models").json()["data"]
    assert listed["latest_version"] == 2
    assert listed.get("versions", [1]) != []  # versions are listed by GET /v1/models/{name}
    shown = client.get("/v1/models/iris").json()
    assert [v["version"] for v in shown["versions"]] == [1, 2]


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """Spans of this process's OpenTelemetry tracer provider (set once per process)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.mark.parametrize("on", [True, False])
def test_requests_are_traced_only_with_opentelemetry_on(
    settings: Settings, spans: InMemorySpanExporter, on: bool
) -> None:
    spans.clear()
    with TestClient(create_app(settings.model_copy(update={"opentelemetry": on}))) as client:
        assert client.get("/healthz").status_code == 200
    routes = [span.attributes.get("http.route") for span in spans.get_finished_spans()]
    assert ("/healthz" in routes) is on, routes
