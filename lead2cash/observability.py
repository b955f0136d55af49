"""Logging (structlog JSON, secrets redacted) and Prometheus metrics."""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REDACTED = "***"


ISSUED_KEPT = 64


class SecretRedactor:
    """structlog processor: replaces every configured secret value wherever it appears in an event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._configured: set[str] = set()
        # Credentials obtained at run time (access tokens): the latest few, as older ones have expired.
        self._issued: deque[str] = deque(maxlen=ISSUED_KEPT)
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self._configured |= {s for s in secrets if s and len(s) >= 4}
        self._merge()

    def add_issued(self, token: str | None) -> None:
        """A token a connector obtained (OAuth access token, session id): redacted like a configured secret."""
        if token and len(token) >= 4 and token not in self._issued:
            self._issued.append(token)
            self._merge()

    def _merge(self) -> None:
        # Longest first, so a secret that contains another is replaced whole; very short values would
        # shred ordinary text and are not secrets worth the name.
        self._secrets = sorted(self._configured | set(self._issued), key=len, reverse=True)

    def redact(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.redact(v) for v in value)
        if isinstance(value, BaseException):
            return self.redact(repr(value))
        return value

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event):
            event[key] = self.redact(event[key])
        return event


REDACTOR = SecretRedactor()


def configure_logging(level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    """JSON lines on stderr by default; ``console`` for people. The redactor runs last before rendering,
    after exceptions are formatted, so a traceback cannot leak a secret either."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            REDACTOR,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=(lambda *_: _StreamLogger(stream)),
        cache_logger_on_first_use=False,
    )


class StructlogHandler(logging.Handler):
    """A standard-library handler that hands each record to structlog, so the records of libraries that
    log by themselves (uvicorn) are rendered and redacted like the hub's own."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            structlog.get_logger(record.name).log(
                record.levelno, record.getMessage(), logger=record.name, exc_info=record.exc_info or False
            )
        except Exception:
            self.handleError(record)


class _StreamLogger:
    """Writes to ``stream``, or to whatever ``sys.stderr`` is at the time of writing (it may be swapped)."""

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        out = self._stream or sys.stderr
        out.write(message + "\n")
        out.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.ingested = Counter(
            "lead2cash_ingested_total", "Records written to the inbox", ["route"], registry=r
        )
        self.delivered = Counter("lead2cash_delivered_total", "Effects confirmed", ["route"], registry=r)
        self.retries = Counter(
            "lead2cash_retries_total", "Delivery retries", ["route", "error_class"], registry=r
        )
        self.dead_letters = Counter(
            "lead2cash_dead_letters_total", "Dead letters", ["route", "stage"], registry=r
        )
        self.webhook_events = Counter(
            "lead2cash_webhook_events_total",
            "Verified webhook deliveries by sending system, event type and what became of them "
            "(accepted, duplicate, ignored: nothing queued as no route reads it or its effect is known, "
            "dead_letter: refused at mapping)",
            ["source", "type", "outcome"],
            registry=r,
        )
        self.recovered = Counter(
            "lead2cash_recovered_total", "Unconfirmed effects found by lookup", ["route"], registry=r
        )
        self.latency = Histogram(
            "lead2cash_delivery_seconds",
            "Target call latency",
            ["route"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.paused = Gauge("lead2cash_route_paused", "1 while a route is paused", ["route"], registry=r)
        # Reconciliations run inside the hub (``reconcile:`` in the config): the last result per check.
        self.reconcile_differences = Gauge(
            "lead2cash_reconcile_differences",
            "Differences the last reconciliation found, by check, currency and likely cause",
            ["check", "currency", "cause"],
            registry=r,
        )
        self.reconcile_clean = Gauge(
            "lead2cash_reconcile_clean",
            "1 when the last reconciliation found no difference",
            ["check"],
            registry=r,
        )
        self.reconcile_last_run = Gauge(
            "lead2cash_reconcile_last_run_timestamp",
            "When the last reconciliation finished (Unix time; failed runs leave it)",
            ["check"],
            registry=r,
        )
        self.reconcile_failures = Counter(
            "lead2cash_reconcile_failures_total",
            "Reconciliations that could not read a system",
            ["check"],
            registry=r,
        )
