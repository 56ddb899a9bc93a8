"""Structured logging: structlog in front, stdlib logging routed through the same renderer."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from opentelemetry import trace

from tessera.core._settings import TesseraSettings

_configure_lock = threading.Lock()
_installed_handler: logging.Handler | None = None


def add_trace_context(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add `trace_id` and `span_id` (lower-case hex) of the current OpenTelemetry span, if any.

    A structlog processor: it runs in the thread and context of the log call, so inside a traced
    gRPC request every line carries the request's ids.
    """
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = trace.format_trace_id(context.trace_id)
        event_dict["span_id"] = trace.format_span_id(context.span_id)
    return event_dict


# Processors shared by structlog calls and by records from stdlib loggers ("foreign" records).
_SHARED_PROCESSORS: tuple[Any, ...] = (
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.stdlib.ExtraAdder(),
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    add_trace_context,
)


def configure_logging(settings: TesseraSettings, *, stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging through one renderer on the root logger.

    Lines are JSON objects (`log_format="json"`) or a human console format (`"console"`); each
    has `timestamp`, `level`, `logger`, `event`, `service`, the structlog context variables bound
    for the current request, and `trace_id`/`span_id` while an OpenTelemetry span is current.

    Idempotent and thread-safe: a second call replaces the handler the first one installed (so it
    can change the format, level or stream) and never adds a duplicate.

    Args:
        settings: Supplies `log_format`, `log_level` and `service_name`.
        stream: Where lines go; standard error by default.

    """
    global _installed_handler
    renderer: Any
    out = sys.stderr if stream is None else stream
    if settings.log_format == "json":
        renderer = (structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer())
    else:
        # Colour codes only for a terminal: `tessera dev up` sends console logs to files.
        renderer = (structlog.dev.ConsoleRenderer(colors=out.isatty()),)
    service_name = settings.service_name

    def add_service(
        logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service_name)
        return event_dict

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED_PROCESSORS,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            add_service,
            *renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)

    with _configure_lock:
        structlog.configure(
            processors=[
                structlog.stdlib.filter_by_level,
                *_SHARED_PROCESSORS,
                structlog.stdlib.PositionalArgumentsFormatter(),
                structlog.processors.StackInfoRenderer(),
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            # Not cached: a cached logger would ignore later reconfiguration, including
            # structlog.testing.capture_logs in tests; Tessera logs per event, not per request.
            cache_logger_on_first_use=False,
        )
        root = logging.getLogger()
        if _installed_handler is not None:
            root.removeHandler(_installed_handler)
        root.addHandler(handler)
        root.setLevel(settings.log_level)
        _installed_handler = handler
