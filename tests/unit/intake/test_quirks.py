"""Excel's ``sep=`` line, nameless trailing columns, and leadflow's own reports re-submitted."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from orchestrator.intake.encoding import scan_source
from orchestrator.intake.fields import Catalogue, Field
from orchestrator.intake.prepare import Prepared, PrepareSpec, max_line_bytes, prepare_file
from orchestrator.intake.quirks import HeaderTrim, trim_header
from orchestrator.intake.reasons import Unimportable


def prepare(tmp_path: Path, data: bytes, catalogue: Catalogue) -> Prepared:
    source = tmp_path / "source" / "in.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(data)
    spec = PrepareSpec(catalogue=catalogue, lookup_field="email", max_upload_bytes=9_500_000)
    return prepare_file(source, tmp_path, scan_source(source, max_line_bytes(9_500_000)), spec)


def reject(tmp_path: Path, data: bytes, catalogue: Catalogue) -> str:
    with pytest.raises(Unimportable) as err:
        prepare(tmp_path, data, catalogue)
    return err.value.reason


def rows_of(prepared: Prepared) -> list[tuple[int, list[str]]]:
    out: list[tuple[int, list[str]]] = []
    for upload in prepared.uploads:
        records = list(csv.reader(io.StringIO(upload.path.read_bytes().decode(), newline="")))
        assert records[0] == prepared.header.names
        out.extend(zip(upload.source_rows(), records[1:], strict=True))
    return out


def rejected(prepared: Prepared) -> list[list[str]]:
    assert prepared.rejections_path is not None
    text = prepared.rejections_path.read_bytes().decode()
    return list(csv.reader(io.StringIO(text, newline="")))[1:]


def test_excel_sep_line_names_the_delimiter(tmp_path: Path, catalogue: Catalogue) -> None:
    data = b"sep=;\r\nemail;firstName\r\na@x.com;Ana, Maria\r\n;Bo\r\nc@x.com;Cy\r\n"
    prepared = prepare(tmp_path, data, catalogue)
    assert (prepared.format, prepared.header.names) == ("ssv", ["email", "firstName"])
    # row numbers count physical lines: the sep= line is line 1, the header line 2
    assert rows_of(prepared) == [(3, ["a@x.com", "Ana, Maria"]), (5, ["c@x.com", "Cy"])]
    assert rejected(prepared) == [["4", "", "Bo", "Value for lookup field 'email' not found"]]


def test_excel_sep_line_overrides_sniffing(tmp_path: Path, catalogue: Catalogue) -> None:
    data = b'"sep=,"\nemail,company\na@x.com,Acme; Inc\n'  # a semicolon in data only
    prepared = prepare(tmp_path, data, catalogue)
    assert (prepared.format, rows_of(prepared)) == ("csv", [(3, ["a@x.com", "Acme; Inc"])])


def test_sep_line_with_an_unknown_delimiter_rejects(tmp_path: Path, catalogue: Catalogue) -> None:
    assert reject(tmp_path, b"sep=|\nemail|city\na@x.com|X\n", catalogue) == (
        "The first line 'sep=|' asks for the delimiter '|'; leadflow reads comma, tab or semicolon."
    )


def test_trailing_nameless_header_column_is_dropped(tmp_path: Path, catalogue: Catalogue) -> None:
    data = b"email,firstName,\r\na@x.com,Ana,\r\nb@x.com,Bo\r\nc@x.com,Cy, \r\n"
    with capture_logs() as logs:
        prepared = prepare(tmp_path, data, catalogue)
    assert prepared.header.names == ["email", "firstName"]
    assert rows_of(prepared) == [
        (2, ["a@x.com", "Ana"]),
        (3, ["b@x.com", "Bo"]),
        (4, ["c@x.com", "Cy"]),
    ]
    assert {"event": "header_nameless_columns_dropped", "count": 1, "first": 3}.items() <= next(
        e for e in logs if e["event"] == "header_nameless_columns_dropped"
    ).items()


def test_value_under_a_nameless_column_rejects(tmp_path: Path, catalogue: Catalogue) -> None:
    rows = b"".join(b"u%d@x.com,Ana,,\r\n" % i for i in range(1500))
    data = b"email,firstName,,\r\n" + rows + b"z@x.com,Zed,,oops\r\n"
    assert reject(tmp_path, data, catalogue) == (
        "Column 4 of the header has no name, but the record on line 1502 has a value in it "
        "('oops'); name the column or delete it."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]  # nothing half-written


def test_nameless_column_in_the_middle_still_rejects(tmp_path: Path, catalogue: Catalogue) -> None:
    data = b"email,,firstName\r\na@x.com,,Ana\r\n"
    assert reject(tmp_path, data, catalogue) == "Column 2 of the header has no name."


def test_leadflow_failures_csv_resubmitted(tmp_path: Path, catalogue: Catalogue) -> None:
    data = (
        b"sourceRow,email,firstName,numberOfEmployees,reason\r\n"
        b"4,bo@x.com,Bo,12,Invalid data type in field Num Employees\r\n"
        b"7,dee@x.com,\"Dee, Jr\",2,Value for lookup field 'email' not found\r\n"
        b"9,eve@x.com,Eve,3\r\n"  # the reason deleted along with its comma
        b",fay@x.com,Fay,4,\r\n"
    )
    with capture_logs() as logs:
        prepared = prepare(tmp_path, data, catalogue)
    assert prepared.header.names == ["email", "firstName", "numberOfEmployees"]
    assert prepared.rows_rejected == 0
    assert rows_of(prepared) == [
        (2, ["bo@x.com", "Bo", "12"]),
        (3, ["dee@x.com", "Dee, Jr", "2"]),
        (4, ["eve@x.com", "Eve", "3"]),
        (5, ["fay@x.com", "Fay", "4"]),
    ]
    assert any(e["event"] == "leadflow_report_columns_dropped" for e in logs)


def test_report_header_needs_both_columns(tmp_path: Path, catalogue: Catalogue) -> None:
    catalogue = Catalogue([*catalogue.fields.values(), Field("leadSource", "Lead Source")])
    data = b"sourceRow,email,firstName\r\n4,bo@x.com,Bo\r\n"
    assert reject(tmp_path, data, catalogue) == (
        "Unknown column 'sourceRow' (leadflow's row numbers: delete the column, or keep "
        "'reason' last): not a field of the lead describe."
    )


@pytest.mark.parametrize(
    ("columns", "kept", "trim"),
    [
        (["email", "city"], ["email", "city"], None),
        (["email", "city", "", " "], ["email", "city"], HeaderTrim(2, 2, False)),
        (["sourceRow", "email", "reason"], ["email"], HeaderTrim(3, 0, True)),
        (["sourceRow", "email", "reason", ""], ["email"], HeaderTrim(3, 1, True)),
        (["sourceRow", "reason"], ["sourceRow", "reason"], None),
        (["", ""], ["", ""], None),
    ],
)
def test_trim_header(columns: list[str], kept: list[str], trim: HeaderTrim | None) -> None:
    assert trim_header(columns) == (kept, trim)
