"""Why a file or a row cannot be imported: one exception and the exact reason strings.

Row reasons repeat Marketo's own failure texts (docs/reference/marketo-api.md §7 and §8.5) so that
local rejections and Marketo's failures read alike in ``failures.csv``.
"""

from __future__ import annotations

from orchestrator.errors import OrchestratorError
from orchestrator.models import FileStatus

#: Row reason: the record's field count differs from the header's (Marketo's text).
WRONG_FIELD_COUNT = "Invalid number of fields"
#: Row reason: a custom object record without a value in a dedupe field (Marketo's text,
#: ADOC-co).
MISSING_DEDUPE = "missing.dedupe.fields"


def lookup_not_found(field: str) -> str:
    """Row reason for an empty lookup value: ``Value for lookup field 'email' not found``."""
    return f"Value for lookup field '{field}' not found"


def invalid_type(display_name: str) -> str:
    """Row reason for a value of the wrong type: ``Invalid data type in field Lead Score``."""
    return f"Invalid data type in field {display_name}"


def record_too_large(limit: int) -> str:
    """Row reason for a record that does not fit in any upload of ``limit`` bytes."""
    return f"Record too large for one upload (limit {limit} bytes with the header)"


class Unimportable(OrchestratorError):
    """The whole file cannot be imported; the file ends in ``status`` with ``reason``.

    Attributes:
        status: ``FileStatus.REJECTED`` or ``FileStatus.EMPTY``.
        reason: one sentence for the operator (goes to ``files.error`` and ``report.json``).
    """

    def __init__(self, reason: str, status: FileStatus = FileStatus.REJECTED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def empty(reason: str) -> Unimportable:
    """Return the ``empty`` outcome with ``reason``."""
    return Unimportable(reason, FileStatus.EMPTY)
