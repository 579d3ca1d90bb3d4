"""Structured logs: readable on a terminal, JSON lines for machines."""

from __future__ import annotations

import logging
import sys

import structlog

from polytape.redact import redact_processor


def configure_logging(fmt: str = "auto", level: str = "INFO") -> None:
    """Set up structlog once; ``fmt`` is auto (console on a TTY), console or json."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks become text first so that the redaction sees them too.
        structlog.processors.format_exc_info,
        redact_processor,
    ]
    renderer: structlog.types.Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
