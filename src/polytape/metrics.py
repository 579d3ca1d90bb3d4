"""Prometheus metrics of polytape, all in one project registry.

Every metric object is created once, here, at import. Code elsewhere imports the
object it updates (``HTTP_REQUESTS.labels(host=..., status=...).inc()``); the
scrape endpoint serves :data:`REGISTRY` only, so nothing from other libraries leaks in.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()

HTTP_REQUESTS = Counter(
    "polytape_http_requests",
    "HTTP request attempts by host and outcome (status code, 'timeout' or 'error').",
    ["host", "status"],
    registry=REGISTRY,
)
HTTP_429 = Counter(
    "polytape_http_429",
    "Rate-limited answers (429 or a Cloudflare rate-limit page) by host.",
    ["host"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "polytape_http_latency_seconds",
    "Time from sending a request to having its whole body, by host.",
    ["host"],
    registry=REGISTRY,
)
JOB_RUNS = Counter(
    "polytape_job_runs",
    "Finished job runs by job and status (ok, partial, error).",
    ["job", "status"],
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "polytape_job_duration_seconds",
    "Wall time of one job run.",
    ["job"],
    registry=REGISTRY,
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
ROWS_WRITTEN = Counter(
    "polytape_rows_written",
    "Rows written by table.",
    ["table"],
    registry=REGISTRY,
)
WS_MESSAGES = Counter(
    "polytape_ws_messages",
    "CLOB WebSocket events received by event type.",
    ["event_type"],
    registry=REGISTRY,
)
WS_RECONNECTS = Counter(
    "polytape_ws_reconnects",
    "CLOB WebSocket reconnections.",
    registry=REGISTRY,
)
BOOK_RESYNCS = Counter(
    "polytape_book_resyncs",
    "Order books re-fetched over REST, by reason.",
    ["reason"],
    registry=REGISTRY,
)
BOOK_HASH_MISMATCHES = Counter(
    "polytape_book_hash_mismatches",
    "Order-book hashes that did not match the local book.",
    registry=REGISTRY,
)
BOOK_LAG_SECONDS = Gauge(
    "polytape_book_lag_seconds",
    "Age of the newest order-book update applied.",
    registry=REGISTRY,
)
REJECTED_PAYLOADS = Counter(
    "polytape_rejected_payloads",
    "Payloads that could not be parsed, by source.",
    ["source"],
    registry=REGISTRY,
)

SIGNALS_WRITTEN = Counter(
    "polytape_signals_written",
    "New rows in signal_events, by signal type.",
    ["signal_type"],
    registry=REGISTRY,
)

ARCHIVE_ROWS = Counter(
    "polytape_archive_rows_written_total",
    "Rows written to the Parquet archive, by data type.",
    ["data_type"],
    registry=REGISTRY,
)
ARCHIVE_BYTES = Counter(
    "polytape_archive_bytes_written_total",
    "Bytes of Parquet written by the archive's flushes.",
    registry=REGISTRY,
)
ARCHIVE_FLUSH_LAG = Gauge(
    "polytape_archive_flush_lag_seconds",
    "Age of the oldest row of the archive's last flush when it reached disk.",
    registry=REGISTRY,
)


def start_metrics_server(port: int, addr: str = "127.0.0.1") -> None:
    """Serve :data:`REGISTRY` at ``http://addr:port/metrics`` from a daemon thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)


ALERT_DELIVERIES = Counter(
    "polytape_alert_deliveries",
    "Alerts by outcome: sent, failed (after retries), held (rate limit), stale (older than the "
    "horizon), repeat (already delivered), filtered (the channel does not want it), dropped (queue full).",
    ["outcome"],
    registry=REGISTRY,
)
