"""The daemon's Prometheus metrics: counters its parts feed, gauges read at each scrape.

`DaemonMetrics` is told by the Marketo client (every answer, every token), by intake (how
long a file took) and by the daemon (reloads); it keeps counters and histograms in its own
``CollectorRegistry`` (one per daemon, so tests can run several). `DaemonMetrics.render`
adds, for one scrape, the gauges of ``leadflow status --prometheus``
(``orchestrator.metrics.add_status_gauges``) and the daemon's live state (`Live`).

Names follow Prometheus' rules: ``leadflow_`` prefix, ``_total`` counters, ``_seconds`` and
``_bytes`` units. The process collector adds the standard ``process_*`` families
(``process_start_time_seconds`` among them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from orchestrator.window.prometheus import add_status_gauges

#: Attempts in a row that got no answer from Marketo (connection refused, timeout, HTTP 5xx)
#: before ``/readyz`` says Marketo is unreachable.
UNREACHABLE_AFTER = 3
#: Histogram buckets for a file's intake and preparation, seconds.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
#: Open files' statuses (a file is "waiting" until it is reported).
OPEN_STATUSES = frozenset({"received", "queued", "reporting"})


@dataclass(frozen=True, slots=True)
class Live:
    """The daemon's state at a scrape, besides what the database says.

    Attributes:
        calls_in_window: calls occupying the sliding 20-s window now.
        calls_per_20s: ``limits.calls_per_20s``.
        quota_paused: calls wait for the quota reset (Marketo's 607 or our budget).
        credentials_refused: identity refuses the credentials (work paused).
        marketo_reachable: the last attempts got an answer from Marketo.
    """

    calls_in_window: int = 0
    calls_per_20s: int = 0
    quota_paused: bool = False
    credentials_refused: bool = False
    marketo_reachable: bool = True


class DaemonMetrics:
    """Counters and histograms of one daemon, and the scrape that renders them.

    Attributes:
        registry: counters, histograms and the process collector.
        failures_in_a_row: attempts in a row that got no answer from Marketo.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.answers = Counter(
            "leadflow_marketo_answers",
            "HTTP attempts to Marketo by endpoint and answer: ok, Marketo's error code (1016, "
            "606, 607, 601, 602, ...), the HTTP status of an HTTP-level error, timeout or "
            "connection",
            ["endpoint", "code"],
            registry=self.registry,
        )
        self.token_refreshes = Counter(
            "leadflow_token_refreshes", "Access tokens granted by Marketo's identity endpoint",
            registry=self.registry,
        )
        self.intake_bytes = Counter(
            "leadflow_intake_bytes", "Bytes of source files prepared and queued",
            registry=self.registry,
        )
        self.reloads = Counter(
            "leadflow_reloads", "Settings reloads (SIGHUP) by result: applied or failed",
            ["result"], registry=self.registry,
        )
        self.intake_seconds = Histogram(
            "leadflow_intake_duration_seconds",
            "Seconds from a file's claim out of the inbox to its uploads being queued",
            buckets=DURATION_BUCKETS, registry=self.registry,
        )
        self.preparation_seconds = Histogram(
            "leadflow_preparation_duration_seconds",
            "Seconds spent validating, normalising and splitting one file",
            buckets=DURATION_BUCKETS, registry=self.registry,
        )
        for result in ("applied", "failed"):
            self.reloads.labels(result=result)
        self.failures_in_a_row = 0

    # --- fed by the daemon's parts -------------------------------------------------------

    def answered(self, endpoint: str, code: str, http_status: int) -> None:
        """Count one HTTP attempt's answer (``MarketoClient``/``TokenManager`` call this)."""
        self.answers.labels(endpoint=endpoint, code=code).inc()
        if http_status == 0 or http_status >= 500:
            self.failures_in_a_row += 1
        else:
            self.failures_in_a_row = 0

    def token_refreshed(self) -> None:
        """Count a token granted by the identity endpoint."""
        self.token_refreshes.inc()

    def file_prepared(self, seconds: float) -> None:
        """Observe one file's preparation (validate, normalise, split), seconds."""
        self.preparation_seconds.observe(max(seconds, 0.0))

    def file_queued(self, seconds: float, size_bytes: int) -> None:
        """Observe one file's intake (claim to queued), seconds, and count its bytes."""
        self.intake_seconds.observe(max(seconds, 0.0))
        self.intake_bytes.inc(max(size_bytes, 0))

    @property
    def marketo_reachable(self) -> bool:
        """False after `UNREACHABLE_AFTER` attempts in a row got no answer from Marketo."""
        return self.failures_in_a_row < UNREACHABLE_AFTER

    # --- the scrape ----------------------------------------------------------------------

    def render(self, data: dict[str, Any], live: Live, now: float | None = None) -> bytes:
        """Return the exposition text: status gauges, live gauges, counters, histograms.

        Args:
            data: a ``status.collect_status`` dict.
            live: the daemon's state now.
            now: epoch seconds (ages are measured from it); default ``time.time()``.
        """
        now = time.time() if now is None else now
        scrape = CollectorRegistry(auto_describe=True)
        add_status_gauges(data, scrape)
        jobs = Gauge(
            "leadflow_marketo_jobs",
            "Our import jobs at Marketo by Marketo status (Queued, Importing), against "
            "leadflow_import_slots_budget",
            ["status"], registry=scrape,
        )
        for status in ("Queued", "Importing"):
            jobs.labels(status=status).set(
                sum(1 for b in data["batches"] if b["status"] == status)
            )
        Gauge(
            "leadflow_api_calls_window", "Calls in the current sliding 20-second window",
            registry=scrape,
        ).set(live.calls_in_window)
        Gauge(
            "leadflow_api_calls_window_limit", "limits.calls_per_20s", registry=scrape,
        ).set(live.calls_per_20s)
        waiting = [f["received_at"] for f in data["files"]
                   if f["status"] in OPEN_STATUSES and f.get("received_at") is not None]
        Gauge(
            "leadflow_oldest_waiting_file_age_seconds",
            "Seconds since the oldest file not yet finished was received (0 when none)",
            registry=scrape,
        ).set(max(now - min(waiting), 0.0) if waiting else 0.0)
        finished = [f["reported_at"] for f in data["files"] if f.get("reported_at") is not None]
        Gauge(
            "leadflow_last_file_finished_timestamp_seconds",
            "When the last file was finished (reported), epoch seconds (0 when none)",
            registry=scrape,
        ).set(max(finished, default=0.0))
        paused = Gauge(
            "leadflow_paused", "1 while work is paused, by reason: quota, credentials",
            ["reason"], registry=scrape,
        )
        paused.labels(reason="quota").set(int(live.quota_paused))
        paused.labels(reason="credentials").set(int(live.credentials_refused))
        Gauge(
            "leadflow_marketo_reachable",
            "1 while Marketo answers; 0 after several attempts in a row got no answer",
            registry=scrape,
        ).set(int(live.marketo_reachable))
        return generate_latest(scrape) + generate_latest(self.registry)
