"""Results: per-file reports, Marketo's failure/warning rows mapped back to source rows.

``Reporter`` lives in ``orchestrator.results.reporter``; it is re-exported here.
"""

from __future__ import annotations

from orchestrator.results.reporter import Reporter

__all__ = ["Reporter"]
