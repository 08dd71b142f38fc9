"""The service's Prometheus metrics, in a registry of their own (no global state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Error kinds that are refusals of load (limits, timeouts, overload), counted by reason in indad_refused_total.
REFUSALS = frozenset(
    {"busy", "overloaded", "too_many_images", "too_many_pixels", "too_many_request_pixels", "body_too_large",
     "body_timeout", "header_timeout"}
)  # fmt: skip


@dataclass
class Metrics:
    """Requests (by route and status), request latency, images scored, errors (by kind), batch sizes, images waiting
    (admitted, not yet answered) and requests refused (by reason: :data:`REFUSALS`)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("indad_requests", "HTTP requests answered", ["route", "status"], registry=r)
        self.latency = Histogram(
            "indad_request_seconds", "Time to answer a request", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.images = Counter("indad_images_scored", "Images scored", registry=r)
        self.errors = Counter("indad_errors", "Requests answered with an error", ["kind"], registry=r)
        self.batch_size = Histogram(
            "indad_batch_size", "Images per scorer call", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r
        )
        self.waiting = Gauge("indad_images_waiting", "Images admitted and not yet answered (the queue)", registry=r)
        self.refused = Counter("indad_refused", "Requests refused for load: limits, timeouts", ["reason"], registry=r)

    def refuse(self, reason: str) -> None:
        """One request refused for ``reason`` (a connection closed for slow headers counts too)."""
        self.refused.labels(reason).inc()

    def record_batch(self, size: int) -> None:
        """One scorer call of ``size`` images."""
        self.images.inc(size)
        self.batch_size.observe(size)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
