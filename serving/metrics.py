"""Prometheus metrics of the service. With several uvicorn workers, set PROMETHEUS_MULTIPROC_DIR
(`python -m serving` does it) and /metrics aggregates every worker's values."""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter("slotfill_http_requests", "HTTP requests answered", ["route", "method", "status"])
REQUEST_SECONDS = Histogram(
    "slotfill_http_request_duration_seconds",
    "Time from request start to the end of the response",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    "slotfill_inference_seconds", "Time of one batched forward pass with decoding", buckets=LATENCY_BUCKETS
)
BATCH_SENTENCES = Histogram(
    "slotfill_batch_sentences",
    "Sentences per forward pass (concurrent requests gathered together)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
RELOADS = Counter("slotfill_model_reloads", "Checkpoint reloads", ["outcome"])

CONTENT_TYPE = CONTENT_TYPE_LATEST


def observe_batch(sentences: int, seconds: float) -> None:
    BATCH_SENTENCES.observe(sentences)
    INFERENCE_SECONDS.observe(seconds)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    labels = (route, method, str(status))
    REQUESTS.labels(*labels).inc()
    REQUEST_SECONDS.labels(*labels).observe(seconds)


def render() -> bytes:
    """The exposition text: this process's metrics, or every worker's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
