"""Prometheus metrics: one registry for the process, rendered at GET /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
LOGINS = Counter("authgate_logins", "Login attempts by outcome", ["outcome"], registry=REGISTRY)
OUTBOX_PENDING = Gauge("authgate_outbox_pending", "Messages waiting in the outbox", registry=REGISTRY)
DB_POOL_CHECKED_OUT = Gauge("authgate_db_pool_checked_out", "Database connections in use", registry=REGISTRY)
PASSWORD_HASH_QUEUE = Gauge(
    "authgate_password_hash_waiting", "Password hashes waiting for a thread", registry=REGISTRY
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


def render() -> bytes:
    return generate_latest(REGISTRY)
