"""Values data tools write for "missing" never become leads (issue 12, item 3).

Each spelling goes through intake on a real file in a real inbox with a real store: the row
holding it in the lookup column is rejected before upload as an empty lookup value, written
as the tool writes it and also in another case with spaces around it; the good row is sent.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from intake_support import parse, uploads_of

from orchestrator.intake import Intake
from orchestrator.models import FileStatus
from orchestrator.settings import IntakeSettings
from orchestrator.store import Store

#: pandas' ``read_csv`` default ``na_values`` (``pandas/_libs/parsers.pyx``, ``STR_NA_VALUES``,
#: pandas 2.x), the empty string left out (it is empty anyway).
PANDAS_NA_VALUES = (
    "-1.#IND", "1.#QNAN", "1.#IND", "-1.#QNAN", "#N/A N/A", "#N/A", "N/A", "n/a", "NA",
    "<NA>", "#NA", "NULL", "null", "NaN", "-NaN", "nan", "-nan", "None",
)

#: What tools write for a missing value, by who writes it.
SPELLINGS = {
    "spreadsheet": ("#N/A", "N/A", "n/a", "NA", "#NULL!", "NULL", "null", "None", "nil", "-",
                    "--", '""', "''"),
    "pandas/numpy": ("nan", "NaN", "<NA>", "NaT", "None", *PANDAS_NA_VALUES),
    "javascript": ("undefined", "null", "NaN"),
    "r": ("NA",),
    "sql export": ("\\N", "NULL"),
}
TOKENS = sorted({token for tokens in SPELLINGS.values() for token in tokens})


def _other_case(token: str) -> str:
    """The token in another case (or as is when it has no letters), with spaces around."""
    flipped = token.swapcase() if token.swapcase() != token else token
    return f"  {flipped} "


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def test_defaults_cover_pandas_read_csv_na_values() -> None:
    folded = {t.strip().lower() for t in IntakeSettings().null_tokens}
    assert {t.lower() for t in PANDAS_NA_VALUES} <= folded
    assert {t.lower() for tokens in SPELLINGS.values() for t in tokens} <= folded


@pytest.mark.parametrize("lookup", ["email", "company"])
@pytest.mark.parametrize("token", TOKENS)
async def test_missing_value_spelling_is_no_lookup_value(
    make_intake: Callable[..., Intake], store: Store, token: str, lookup: str
) -> None:
    intake = make_intake(**{"import": {"lookup_field": lookup}})
    other = "email" if lookup == "company" else "company"
    good = ["good@example.com" if lookup == "email" else "Good Inc", "x"]
    rows = [[lookup, other], good, [token, "as written"], [_other_case(token), "other case"]]
    path = intake.settings.paths.inbox / "missing.csv"
    path.write_bytes(_csv(rows))

    assert await intake.scan_once() == 1

    (record,) = await store.files_in(FileStatus.QUEUED)
    assert (record.rows_total, record.rows_rejected) == (3, 2)
    ((sent, lines),) = await uploads_of(store, record)
    assert parse(sent) == [[lookup, other], good]
    assert lines == [2]
    rejections = Path(record.work_path).parent.parent / "rejections.csv"
    reason = f"Value for lookup field '{lookup}' not found"
    assert [(r[0], r[1], r[-1]) for r in parse(rejections.read_bytes())[1:]] == [
        ("3", token, reason),
        ("4", _other_case(token), reason),
    ]
