"""Prometheus metrics of one API (``GET /metrics``), through the standard client library.

Each API gets its own :class:`~prometheus_client.CollectorRegistry` (never the process-global one), so
tests and several APIs in one process never share or collide on a metric. Names (all ``domainrag_``):

* ``http_requests_total{method,route,status}``, ``http_errors_total{route,status}`` (status >= 400),
  ``http_request_duration_seconds{method,route}``: ``route`` is the route's template
  (``/v1/apps/{app}/completion``), ``unmatched`` for unknown paths, so the label set stays bounded.
* ``generations_in_flight``, ``generations_queued``, ``generation_slots``: the generation pool
  (:mod:`domainrag.serving.limits`): slots held, requests waiting for one, its size.
* ``time_to_first_token_seconds{model}``: from the request's arrival (queue wait, retrieval and
  prefill included: what a client waits), streamed or not; ``inter_token_latency_seconds{model}``.
* ``prompt_tokens_total{model}``, ``completion_tokens_total{model}``.
* ``retrieval_stage_seconds{stage}``: ``embed``, ``dense``, ``bm25``, ``fusion``, ``hybrid`` (fused by
  the search engine), ``expand``, ``rerank``, and ``total``.
* ``batch_size{model}`` (histogram) and ``batch_running{model}`` (gauge): set by a batching backend
  through :func:`record_batch_size`.
* ``rate_limited_total{reason}``: 429s for per-key limits (``rpm``, ``streams``).

Plus the client library's process, platform and garbage-collector collectors.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector

# Seconds: a tiny CPU model answers in tens of milliseconds, a queued request can wait minutes
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
ITL_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
RETRIEVAL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

_live: weakref.WeakSet[Metrics] = weakref.WeakSet()


class Metrics:
    """The metrics of one API, in their own registry; :meth:`exposition` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self.registry = reg = CollectorRegistry()
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
        self.requests = Counter("domainrag_http_requests", "HTTP requests answered, by route template and status",
                                ["method", "route", "status"], registry=reg)
        self.errors = Counter("domainrag_http_errors", "HTTP answers with status >= 400, by route and status",
                              ["route", "status"], registry=reg)
        self.duration = Histogram("domainrag_http_request_duration_seconds",
                                  "Time from a request's arrival to the end of its response (streams included)",
                                  ["method", "route"], buckets=REQUEST_BUCKETS, registry=reg)
        self.in_flight = Gauge("domainrag_generations_in_flight", "Generation slots held now", registry=reg)
        self.queued = Gauge("domainrag_generations_queued", "Requests waiting for a generation slot", registry=reg)
        self.slots = Gauge("domainrag_generation_slots", "Size of the generation pool", registry=reg)
        self.ttft = Histogram("domainrag_time_to_first_token_seconds",
                              "From a request's arrival to its first generated text", ["model"],
                              buckets=TTFT_BUCKETS, registry=reg)
        self.itl = Histogram("domainrag_inter_token_latency_seconds", "Time between consecutive streamed pieces",
                             ["model"], buckets=ITL_BUCKETS, registry=reg)
        self.prompt_tokens = Counter("domainrag_prompt_tokens", "Prompt tokens of answered generations", ["model"],
                                     registry=reg)
        self.completion_tokens = Counter("domainrag_completion_tokens", "Completion tokens generated", ["model"],
                                         registry=reg)
        self.retrieval = Histogram("domainrag_retrieval_stage_seconds", "Retrieval time per stage", ["stage"],
                                   buckets=RETRIEVAL_BUCKETS, registry=reg)
        self.batch_size = Histogram("domainrag_batch_size", "Sequences in one batched generation step", ["model"],
                                    buckets=BATCH_BUCKETS, registry=reg)
        self.batch_running = Gauge("domainrag_batch_running", "Sequences in the running batch now", ["model"],
                                   registry=reg)
        self.rate_limited = Counter("domainrag_rate_limited", "Requests refused with 429 by a per-key limit",
                                    ["reason"], registry=reg)
        _live.add(self)

    def watch_pool(self, in_use: Callable[[], float], waiting: Callable[[], float], size: int) -> None:
        """Read the pool's gauges from the pool itself at scrape time (no bookkeeping twice)."""
        self.in_flight.set_function(in_use)
        self.queued.set_function(waiting)
        self.slots.set(size)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        if status >= 400:
            self.errors.labels(route, str(status)).inc()
        self.duration.labels(method, route).observe(seconds)

    def observe_batch(self, model: str, size: int) -> None:
        self.batch_size.labels(model).observe(size)
        self.batch_running.labels(model).set(size)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def record_batch_size(model: str, size: int) -> None:
    """For batching backends: ``size`` sequences ran in one step of ``model``'s batch (call once per step).

    A backend does not know which API loaded it, so the figure goes to every live API's metrics; a
    server runs one API per process, where that is exactly its own.
    """
    for metrics in list(_live):
        metrics.observe_batch(model, size)
