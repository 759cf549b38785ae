"""Intake: the watched inbox, and turning any lead file into clean uploads.

Public API: ``Intake`` (``recover``, ``scan_once``, ``run``), the field catalogue
(``Catalogue``, ``LeadFieldLike``, ``Field``), ``prepare_file`` with ``PrepareSpec`` and
``Prepared``, and ``Unimportable``.
"""

from __future__ import annotations

from orchestrator.intake.fields import Catalogue, Field, LeadFieldLike
from orchestrator.intake.prepare import Prepared, PrepareSpec, prepare_file
from orchestrator.intake.reasons import Unimportable
from orchestrator.intake.service import Intake
from orchestrator.intake.split import MULTIPART_OVERHEAD

__all__ = [
    "MULTIPART_OVERHEAD",
    "Catalogue",
    "Field",
    "Intake",
    "LeadFieldLike",
    "PrepareSpec",
    "Prepared",
    "Unimportable",
    "prepare_file",
]
