"""The Marketo client: tokens, one limits governor, every call, every error code.

Public API: `MarketoClient` and the records it returns (`ImportJob`, `BatchStatus`,
`LeadField`, `ObjectDescription`); the pure decision helpers live in `errors_table` and
`retry_policy`.
"""

from __future__ import annotations

from orchestrator.marketo.calls import BatchStatus, ImportJob, LeadField, ObjectDescription
from orchestrator.marketo.client import MarketoClient
from orchestrator.marketo.errors_table import Category, Outcome, classify
from orchestrator.marketo.governor import Governor
from orchestrator.marketo.tokens import TokenManager

__all__ = [
    "BatchStatus",
    "Category",
    "Governor",
    "ImportJob",
    "LeadField",
    "MarketoClient",
    "ObjectDescription",
    "Outcome",
    "TokenManager",
    "classify",
]
