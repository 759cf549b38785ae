"""Row outcome order and reason strings (contract 8.5)."""

from __future__ import annotations

import pytest

from orchestrator.simulator.config import DEFAULT_LEAD_FIELDS
from orchestrator.simulator.rows import FAIL, OK, WARN, Column, RowRules, lookup_not_found

SPECS = {f.name: f for f in DEFAULT_LEAD_FIELDS}
HEADER = ["email", "leadScore", "title", "dateOfBirth"]


def _rules(lookup: str = "email") -> RowRules:
    columns = [Column(i, SPECS[name], "lead") for i, name in enumerate(HEADER)]
    return RowRules(HEADER, columns, (lookup,), lookup_not_found(lookup))


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (["a@example.com", "1", "CEO", "1990-01-01"], (OK, None)),
        (["a@example.com", "1"], (FAIL, "Invalid number of fields")),
        (["", "x", "", ""], (FAIL, "Value for lookup field 'email' not found")),
        (["a@example.com", "1.5", "", ""], (FAIL, "Invalid data type in field Lead Score")),
        (["a@example.com", "", "", "1990-02-30"], (FAIL, "Invalid data type in field Date of Birth")),
        (["bad", "x", "", ""], (FAIL, "Invalid data type in field Lead Score")),
        (["bad", "", "y" * 300, ""], (WARN, "Invalid email address")),
        (["a@example.com", "", "y" * 256, ""], (WARN, "Value for field Job Title was truncated")),
        (["a@example.com", "", "y" * 255, ""], (OK, None)),
    ],
)
def test_classification_order(row: list[str], expected: tuple[int, str | None]) -> None:
    assert _rules().classify(row) == expected


def test_records_skip_empty_values_and_truncate() -> None:
    rules = _rules()
    assert rules.records(["a@example.com", "", "t" * 300, ""]) == {
        "lead": {"email": "a@example.com", "title": "t" * 255}
    }
    assert rules.key(["a@example.com", "", "", ""]) == ("a@example.com",)


def test_lookup_column_absent_fails_every_row() -> None:
    rules = _rules(lookup="customerTier")
    assert rules.classify(["a@example.com", "1", "", ""]) == (
        FAIL,
        "Value for lookup field 'customerTier' not found",
    )
