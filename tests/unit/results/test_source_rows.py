"""Unit tests of mapping Marketo's failures/warnings files back to source rows."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from orchestrator.results.source_rows import (
    FAILURE_REASON,
    WARNING_REASON,
    RowIndex,
    fit,
    map_rows,
    read_reported_rows,
    read_upload,
)

HEADER = ["firstName", "lastName", "phone", "email"]


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def test_dropped_empty_last_column_is_filled_with_empty_string(tmp_path: Path) -> None:
    # contract 3.2: the blog-observed file lost its empty trailing `email` column
    path = write(
        tmp_path / "f.csv",
        "firstName,lastName,phone,Import Failure Reason\r\n"
        "Bo,Kim,555-0102,Value for lookup field 'email' not found\r\n",
    )
    rows = list(read_reported_rows(path, HEADER, FAILURE_REASON))
    assert len(rows) == 1
    assert rows[0].values == ("Bo", "Kim", "555-0102", "")
    assert rows[0].reason == "Value for lookup field 'email' not found"


def test_columns_are_read_by_name_not_position(tmp_path: Path) -> None:
    path = write(
        tmp_path / "f.csv",
        "email,phone,lastName,firstName,Import Warning Reason\n"
        "x@y,1,Lee,Ana,Invalid email address\n",
    )
    (row,) = read_reported_rows(path, HEADER, WARNING_REASON)
    assert row.values == ("Ana", "Lee", "1", "x@y")
    assert row.reason == "Invalid email address"


def test_bom_blank_lines_and_short_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path / "f.csv",
        "\ufefffirstName,lastName,phone,email,Import Failure Reason\r\n\r\n"
        "Ana,Lee,1,a@x,bad\r\n"
        "Bo\r\n",
    )
    rows = list(read_reported_rows(path, HEADER, FAILURE_REASON))
    assert [r.values for r in rows] == [("Ana", "Lee", "1", "a@x"), ("Bo", "", "", "")]
    assert rows[1].reason == ""


def test_quotes_commas_and_newlines_survive(tmp_path: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([*HEADER, FAILURE_REASON])
    writer.writerow(['O"Neil, Jr', "Suite 5\nBuilding B", "", "q@x", "Invalid, really"])
    path = write(tmp_path / "f.csv", buf.getvalue())
    (row,) = read_reported_rows(path, HEADER, FAILURE_REASON)
    assert row.values == ('O"Neil, Jr', "Suite 5\nBuilding B", "", "q@x")
    assert row.reason == "Invalid, really"


def test_missing_reason_header_takes_last_column(tmp_path: Path) -> None:
    path = write(tmp_path / "f.csv", "firstName,lastName,phone,email,Reason\nA,B,C,D,why\n")
    (row,) = read_reported_rows(path, HEADER, FAILURE_REASON)
    assert row.values == ("A", "B", "C", "D")
    assert row.reason == "why"


def test_header_only_and_empty_files_yield_nothing(tmp_path: Path) -> None:
    assert list(read_reported_rows(write(tmp_path / "a.csv", ""), HEADER, FAILURE_REASON)) == []
    only = write(tmp_path / "b.csv", "firstName,Import Failure Reason\r\n")
    assert list(read_reported_rows(only, HEADER, FAILURE_REASON)) == []


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        list(read_reported_rows(tmp_path / "nope.csv", HEADER, FAILURE_REASON))


def test_read_upload_fits_rows_to_header(tmp_path: Path) -> None:
    path = write(tmp_path / "u.csv", "a,b,c\r\n1,2,3\r\n4\r\n5,6,7,8\r\n")
    header, rows = read_upload(path)
    assert header == ["a", "b", "c"]
    assert rows == [("1", "2", "3"), ("4", "", ""), ("5", "6", "7")]
    assert fit(["x"], 2) == ("x", "")


def test_identical_rows_get_consecutive_source_rows() -> None:
    rows = [("a", "1"), ("b", "2"), ("a", "1"), ("a", "1")]
    index = RowIndex(rows, lookup_at=0)
    matcher = index.matcher()
    assert [matcher.match(("a", "1")) for _ in range(3)] == [0, 2, 3]
    # a fourth identical report finds no unused exact row and no unused lookup row
    assert matcher.match(("a", "1")) is None


def test_lookup_fallback_when_values_differ() -> None:
    index = RowIndex([("ana@x", "Long title"), ("bo@x", "T")], lookup_at=0)
    matcher = index.matcher()
    # Marketo may hand back a changed (e.g. truncated) value: the lookup value still finds it
    assert matcher.match(("ANA@x ", "Long")) == 0
    assert matcher.match(("ana@x", "Long title")) is None  # already taken by the fallback
    assert matcher.match(("zed@x", "T")) is None


def test_separate_matchers_for_failures_and_warnings() -> None:
    index = RowIndex([("a", "1")], lookup_at=0)
    assert index.matcher().match(("a", "1")) == 0
    assert index.matcher().match(("a", "1")) == 0


def test_map_rows_orders_by_source_row_and_puts_unmatched_last(tmp_path: Path) -> None:
    upload = [("r1", "x"), ("r2", "y"), ("r3", "z")]
    lines = [2, 4, 7]  # row 2 spans lines 4-6 in the source
    path = write(
        tmp_path / "f.csv",
        "email,name,Import Failure Reason\nr3,z,c\nzz,q,?\nr1,x,a\n",
    )
    mapped = map_rows(
        read_reported_rows(path, ["email", "name"], FAILURE_REASON), RowIndex(upload, 0), lines
    )
    assert [(m.source_row, m.values, m.reason) for m in mapped] == [
        (2, ("r1", "x"), "a"),
        (7, ("r3", "z"), "c"),
        (None, ("zz", "q"), "?"),
    ]


def test_matched_row_keeps_values_as_sent_even_if_column_dropped(tmp_path: Path) -> None:
    upload = [("Ana", "Lee", "1", "a@x"), ("Bo", "Kim", "2", "")]
    path = write(tmp_path / "f.csv", "firstName,lastName,phone,Import Failure Reason\nBo,Kim,2,no\n")
    (m,) = map_rows(read_reported_rows(path, HEADER, FAILURE_REASON), RowIndex(upload, 3), [2, 3])
    assert m.source_row == 3
    assert m.values == ("Bo", "Kim", "2", "")


def test_values_longer_than_the_csv_default_limit(tmp_path: Path) -> None:
    old = csv.field_size_limit(131072)
    try:
        long = "x" * 300_000
        path = write(tmp_path / "f.csv", f"email,note,{FAILURE_REASON}\na@x,{long},why\n")
        (row,) = read_reported_rows(path, ["email", "note"], FAILURE_REASON)
        assert row.values == ("a@x", long)
        assert csv.field_size_limit() >= 300_000
    finally:
        csv.field_size_limit(old)


def test_tab_separated_reports_are_read_with_the_uploads_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path / "f.tsv", f"email\tcity\t{WARNING_REASON}\nA@x\tKöln, DE\tw\n")
    (row,) = read_reported_rows(path, ["email", "city"], WARNING_REASON, delimiter="\t")
    assert row.values == ("A@x", "Köln, DE") and row.reason == "w"
