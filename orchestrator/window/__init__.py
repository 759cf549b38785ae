"""The operator's window: health, readiness, Prometheus metrics, a status page over HTTP.

Served by ``leadflow run`` on ``http.listen`` (default ``127.0.0.1:9464``; ``""`` is off):

- ``server``: the aiohttp listener, its routes, the token rule and the limits;
- ``api``: liveness, readiness, a file's progress and its report files;
- ``metrics``: counters the daemon's parts feed and gauges read at each scrape;
- ``page``: the self-refreshing HTML status page (and systemd's one-line summary).

The window only reads: nothing served changes the daemon, and nothing carries a secret.
"""

from __future__ import annotations

from orchestrator.window.metrics import DaemonMetrics, Live
from orchestrator.window.server import HttpWindow, check_listen

__all__ = ["DaemonMetrics", "HttpWindow", "Live", "check_listen"]
