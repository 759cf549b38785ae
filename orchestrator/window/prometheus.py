"""Metrics: the status figures in Prometheus' text format (``leadflow status --prometheus``).

Built with ``prometheus_client`` from the dict that ``status.collect_status`` returns, so a
node_exporter textfile collector (or any scraper of a file) can watch leadflow without the
daemon serving HTTP.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest


def render_prometheus(data: dict[str, Any]) -> str:
    """Return Prometheus exposition text for a ``collect_status`` dict (see `add_status_gauges`)."""
    registry = CollectorRegistry()
    add_status_gauges(data, registry)
    return generate_latest(registry).decode("utf-8")


def add_status_gauges(data: dict[str, Any], registry: CollectorRegistry) -> None:
    """Register gauges for a ``collect_status`` dict in ``registry``.

    The daemon's ``/metrics`` (``orchestrator/window/metrics.py``) serves the same gauges.

    Metrics: ``leadflow_daemon_running`` (1 or 0), ``leadflow_files{status}``,
    ``leadflow_uploads{status}``, ``leadflow_import_slots_in_use``,
    ``leadflow_import_slots_budget``,
    ``leadflow_api_calls_today{endpoint}``, ``leadflow_api_errors_today{endpoint}``,
    ``leadflow_daily_call_budget``, ``leadflow_oldest_batch_age_seconds`` (0 when none),
    ``leadflow_files_waiting_for_pack``, ``leadflow_oldest_pack_wait_seconds`` (0 when none)
    (the slot and call figures without a label are the first instance's);
    per Marketo instance: ``leadflow_instance_slots_in_use{instance}``,
    ``leadflow_instance_slots_budget{instance}``, ``leadflow_instance_calls_today{instance}``,
    ``leadflow_instance_call_budget{instance}``; on PostgreSQL:
    ``leadflow_lease_held{instance,holder}`` (1 while a node holds it),
    ``leadflow_node_heartbeat_age_seconds{node}``.
    """
    Gauge(
        "leadflow_daemon_running", "1 when a daemon holds the database's lock, else 0",
        registry=registry,
    ).set(1 if (data.get("daemon") or {}).get("running") else 0)
    files = Gauge("leadflow_files", "Input files by status", ["status"], registry=registry)
    for status, count in data["counts"]["files"].items():
        files.labels(status=status).set(count)
    uploads = Gauge("leadflow_uploads", "Uploads by status", ["status"], registry=registry)
    for status, count in data["counts"]["uploads"].items():
        uploads.labels(status=status).set(count)
    Gauge(
        "leadflow_import_slots_in_use",
        "Our jobs queued-or-importing at Marketo",
        registry=registry,
    ).set(data["slots"]["in_use"])
    Gauge(
        "leadflow_import_slots_budget", "limits.import_slots", registry=registry
    ).set(data["slots"]["budget"])
    calls = Gauge(
        "leadflow_api_calls_today",
        "API calls on the current Marketo day (America/Chicago)",
        ["endpoint"],
        registry=registry,
    )
    errors = Gauge(
        "leadflow_api_errors_today",
        "API calls answered with an error on the current Marketo day",
        ["endpoint"],
        registry=registry,
    )
    for endpoint, usage in data["calls_today"]["by_endpoint"].items():
        calls.labels(endpoint=endpoint).set(usage["calls"])
        errors.labels(endpoint=endpoint).set(usage["errors"])
    Gauge(
        "leadflow_daily_call_budget", "limits.daily_call_budget", registry=registry
    ).set(data["calls_today"]["budget"])
    ages = [b["age_s"] for b in data["batches"]]
    Gauge(
        "leadflow_oldest_batch_age_seconds",
        "Age of the oldest batch still at Marketo, seconds",
        registry=registry,
    ).set(max(ages, default=0.0))
    packing = data.get("packing") or {}
    Gauge(
        "leadflow_files_waiting_for_pack",
        "Files with rows waiting in the FIFO for a pack (a shared upload)",
        registry=registry,
    ).set(packing.get("waiting_files") or 0)
    Gauge(
        "leadflow_oldest_pack_wait_seconds",
        "How long the oldest part waiting for a pack has waited, seconds",
        registry=registry,
    ).set(packing.get("oldest_wait_s") or 0.0)
    add_instance_gauges(data, registry)


def add_instance_gauges(data: dict[str, Any], registry: CollectorRegistry) -> None:
    """Register the per-instance and per-node gauges of a ``collect_status`` dict."""
    labelled = {
        name: Gauge(name, text, ["instance"], registry=registry)
        for name, text in (
            ("leadflow_instance_slots_in_use", "Our jobs queued-or-importing at an instance"),
            ("leadflow_instance_slots_budget", "The instance's limits.import_slots"),
            ("leadflow_instance_calls_today", "API calls to an instance on the current day"),
            ("leadflow_instance_call_budget", "The instance's limits.daily_call_budget"),
        )
    }
    for inst in data.get("instances") or []:
        name = inst["name"]
        labelled["leadflow_instance_slots_in_use"].labels(instance=name).set(
            inst["slots"]["in_use"])
        labelled["leadflow_instance_slots_budget"].labels(instance=name).set(
            inst["slots"]["budget"])
        labelled["leadflow_instance_calls_today"].labels(instance=name).set(
            inst["calls_today"]["calls"])
        labelled["leadflow_instance_call_budget"].labels(instance=name).set(
            inst["calls_today"]["budget"])
    cluster = data.get("cluster") or {}
    held = Gauge("leadflow_lease_held", "1 while a node holds the instance's lease",
                 ["instance", "holder"], registry=registry)
    for lease in cluster.get("leases") or []:
        held.labels(instance=lease["instance"], holder=lease["holder"] or "").set(
            1 if lease["held"] else 0)
    beat = Gauge("leadflow_node_heartbeat_age_seconds", "Seconds since a node's last heartbeat",
                 ["node"], registry=registry)
    for node in cluster.get("nodes") or []:
        beat.labels(node=node["node_id"]).set(node["heartbeat_age_s"])
