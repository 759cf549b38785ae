from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from orchestrator.intake.encoding import scan_source
from orchestrator.intake.fields import Catalogue
from orchestrator.intake.prepare import Prepared, PrepareSpec, max_line_bytes, prepare_file
from orchestrator.intake.reasons import Unimportable
from orchestrator.intake.split import MULTIPART_OVERHEAD
from orchestrator.models import FileStatus

NULLS = ("NULL", "null", "undefined", "#N/A", "N/A", "None")


def prepare(
    tmp_path: Path, data: bytes, catalogue: Catalogue | None, **kw: Any
) -> Prepared:
    source = tmp_path / "source" / "in.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(data)
    spec = PrepareSpec(
        catalogue=catalogue,
        lookup_field=kw.pop("lookup_field", "email"),
        max_upload_bytes=kw.pop("max_upload_bytes", 9_500_000),
        null_tokens=kw.pop("null_tokens", NULLS),
        allow_encoding_guess=kw.pop("allow_encoding_guess", True),
    )
    scan = scan_source(source, max_line_bytes(spec.max_upload_bytes))
    return prepare_file(source, tmp_path, scan, spec)


def reject(tmp_path: Path, data: bytes, catalogue: Catalogue | None, **kw: Any) -> Unimportable:
    with pytest.raises(Unimportable) as err:
        prepare(tmp_path, data, catalogue, **kw)
    return err.value


def rows_of(prepared: Prepared) -> list[tuple[int, list[str]]]:
    out = []
    for upload in prepared.uploads:
        records = list(csv.reader(io.StringIO(upload.path.read_bytes().decode(), newline="")))
        assert records[0] == prepared.header.names
        out.extend(zip(upload.source_rows(), records[1:], strict=True))
    return out


def rejections(prepared: Prepared) -> list[list[str]]:
    assert prepared.rejections_path is not None
    text = prepared.rejections_path.read_bytes().decode()
    return list(csv.reader(io.StringIO(text, newline="")))


def test_values_pass_through_unchanged(tmp_path: Path, catalogue: Catalogue) -> None:
    data = b'email,firstName,unsubscribed,leadScore\n a@x.com ,  Ana  Lee ,false,0\nb@x.com,"x, ""y""",0,007\n'
    prepared = prepare(tmp_path, data, catalogue)
    assert prepared.uploads[0].path.read_bytes() == (
        b"email,firstName,unsubscribed,leadScore\r\n"
        b' a@x.com ,  Ana  Lee ,false,0\r\nb@x.com,"x, ""y""",0,007\r\n'
    )
    assert rows_of(prepared)[0][0] == 2
    assert (prepared.rows_total, prepared.rows_rejected, prepared.rejections_path) == (2, 0, None)


def test_row_rejections_with_line_numbers_and_reasons(tmp_path: Path, catalogue: Catalogue) -> None:
    data = (
        b"email,firstName,leadScore\r\n"  # 1
        b"a@x.com,Ana,1\r\n"  # 2
        b"\r\n"  # 3 blank: skipped
        b"b@x.com,Bo\r\n"  # 4 too few fields
        b"NULL,Cy,3\r\n"  # 5 null token
        b" #N/A ,Di,4\r\n"  # 6 null token after trimming
        b",Ed,5\r\n"  # 7 empty lookup
        b"f@x.com,Fa,12.5\r\n"  # 8 wrong type
        b'g@x.com,"Gu\r\nstav",7,extra\r\n'  # 9-10 too many fields
        b",,\r\n"  # 11 every field empty: skipped
        b"h@x.com,Hu,8\r\n"  # 12
    )
    prepared = prepare(tmp_path, data, catalogue)
    assert [(line, row[0]) for line, row in rows_of(prepared)] == [(2, "a@x.com"), (12, "h@x.com")]
    assert (prepared.rows_total, prepared.rows_rejected) == (8, 6)
    assert rejections(prepared) == [
        ["sourceRow", "email", "firstName", "leadScore", "Import Failure Reason"],
        ["4", "b@x.com", "Bo", "", "Invalid number of fields"],
        ["5", "NULL", "Cy", "3", "Value for lookup field 'email' not found"],
        ["6", " #N/A ", "Di", "4", "Value for lookup field 'email' not found"],
        ["7", "", "Ed", "5", "Value for lookup field 'email' not found"],
        ["8", "f@x.com", "Fa", "12.5", "Invalid data type in field Lead Score"],
        ["9", "g@x.com", "Gu\r\nstav", "7", "extra", "Invalid number of fields"],
    ]


def test_null_tokens_are_configurable(tmp_path: Path, catalogue: Catalogue) -> None:
    data = b"email,firstName\nNULL,Ana\n-,Bo\n"
    prepared = prepare(tmp_path, data, catalogue, null_tokens=("-",))
    assert [row for _, row in rows_of(prepared)] == [["NULL", "Ana"]]
    assert prepared.rows_rejected == 1


def test_every_row_rejected_gives_no_upload(tmp_path: Path, catalogue: Catalogue) -> None:
    prepared = prepare(tmp_path, b"email,firstName\n,Ana\n", catalogue)
    assert prepared.uploads == []
    assert (prepared.rows_total, prepared.rows_rejected) == (1, 1)
    assert not list(tmp_path.glob("upload-*"))


def test_leading_blank_lines_shift_line_numbers(tmp_path: Path, catalogue: Catalogue) -> None:
    prepared = prepare(tmp_path, b"\n\nemail\na@x.com\n", catalogue)
    assert rows_of(prepared) == [(4, ["a@x.com"])]


def test_duplicates_counted_and_listed(tmp_path: Path, catalogue: Catalogue) -> None:
    data = b"email,firstName\nA@x.com,1\nb@x.com,2\na@X.com ,3\nb@x.com,4\nb@x.com,5\nc@x.com,6\n"
    prepared = prepare(tmp_path, data, catalogue)
    assert len(rows_of(prepared)) == 6  # duplicates are still sent (Marketo upserts in order)
    assert prepared.duplicates == 3
    assert prepared.duplicate_list == [
        {"value": "a@x.com", "rows": [2, 4], "count": 2},
        {"value": "b@x.com", "rows": [3, 5, 6], "count": 3},
    ]


def test_split_only_between_records_under_the_limit(tmp_path: Path, catalogue: Catalogue) -> None:
    limit = MULTIPART_OVERHEAD + 400
    lines = ["email,firstName,address"]
    for i in range(60):
        lines.append(f'u{i:03d}@x.com,Zoë 山田,"Unit {i}\nTower B"')
    data = ("\r\n".join(lines) + "\r\n").encode()
    prepared = prepare(tmp_path, data, catalogue, max_upload_bytes=limit)
    assert len(prepared.uploads) > 3
    for upload in prepared.uploads:
        body = upload.path.read_bytes()
        assert len(body) == upload.size_bytes <= limit - MULTIPART_OVERHEAD
        assert body.startswith(b"email,firstName,address\r\n")
        assert body.endswith(b'Tower B"\r\n')
    got = rows_of(prepared)
    assert [line for line, _ in got] == [2 + 2 * i for i in range(60)]
    assert [row[0] for _, row in got] == [f"u{i:03d}@x.com" for i in range(60)]
    assert all(row[2] == f"Unit {i}\nTower B" for i, (_, row) in enumerate(got))


def test_record_too_large_is_rejected_locally(tmp_path: Path, catalogue: Catalogue) -> None:
    limit = MULTIPART_OVERHEAD + 200
    big = "x" * 300
    data = f"email,address\na@x.com,short\nb@x.com,{big}\nc@x.com,short\n".encode()
    prepared = prepare(tmp_path, data, catalogue, max_upload_bytes=limit)
    assert [line for line, _ in rows_of(prepared)] == [2, 4]
    assert rejections(prepared)[1] == [
        "3", "b@x.com", big, "Record too large for one upload (limit 200 bytes with the header)"
    ]


def test_header_larger_than_an_upload(tmp_path: Path, catalogue: Catalogue) -> None:
    err = reject(tmp_path, b"email,firstName\na@x.com,b\n", catalogue, max_upload_bytes=1030)
    assert err.reason == "The header alone is 17 bytes, more than one upload may hold (6 bytes)."


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"", FileStatus.EMPTY, "The file is empty (0 bytes)."),
        (b"\r\n\r\n  \r\n", FileStatus.EMPTY,
         "The file holds only blank lines: no header and no data rows."),
        (b"email,firstName\r\n", FileStatus.EMPTY, "The file has a header but no data rows."),
        (b"email,firstName\r\n\r\n,,\r\n", FileStatus.EMPTY,
         "The file has a header but no data rows."),
        (b"email,first\x00Name\r\n", FileStatus.REJECTED,
         "The file holds NUL bytes (first at byte 11): it is binary, not a CSV text file."),
        (b"PK\x03\x04\x14\x00", FileStatus.REJECTED,
         ("The file is a ZIP archive or an Excel workbook, not a CSV text file; "
         "save it as CSV UTF-8 and drop it again.")),
        (b"firstName,lastName\r\nA,B\r\n", FileStatus.REJECTED,
         "The lookup column 'email' is missing from the header."),
        (b"email,a;b\r\nx,y\r\n", FileStatus.REJECTED,
         ("The delimiter is ambiguous: the header line holds both comma and semicolon; "
         "use one delimiter (comma, tab or semicolon).")),
        (b"\xff\xfee\x00\x00\xd8", FileStatus.REJECTED,
         "The file starts with a utf-16-le byte order mark but is not valid utf-16-le."),
    ],
)
def test_unimportable_files(
    tmp_path: Path, catalogue: Catalogue, data: bytes, status: FileStatus, reason: str
) -> None:
    err = reject(tmp_path, data, catalogue)
    assert (err.status, err.reason) == (status, reason)
    assert not list(tmp_path.glob("upload-*"))


def test_unclosed_quote_swallows_the_rest_into_one_too_large_record(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    data = b'email,address\r\na@x.com,"open\r\n' + b"b@x.com,more\r\n" * 30
    prepared = prepare(tmp_path, data, catalogue, max_upload_bytes=MULTIPART_OVERHEAD + 100)
    assert prepared.uploads == []
    assert [(r[0], r[-1]) for r in rejections(prepared)[1:]] == [
        ("2", "Record too large for one upload (limit 100 bytes with the header)")
    ]


def test_field_over_the_csv_limit_rejects_the_file(tmp_path: Path, catalogue: Catalogue) -> None:
    old = csv.field_size_limit(10)
    try:
        data = b'email,address\r\na@x.com,"open\r\n' + b"b@x.com,more\r\n" * 30
        err = reject(tmp_path, data, catalogue, max_upload_bytes=MULTIPART_OVERHEAD + 100)
    finally:
        csv.field_size_limit(old)
    assert err.reason == (
        "The file is not well-formed CSV in the record starting on line 2: "
        "field larger than field limit (101) "
        "(a quoted value that never closes?)."
    )


def test_line_longer_than_any_upload_rejects_the_file(tmp_path: Path, catalogue: Catalogue) -> None:
    data = b"email,address\r\na@x.com," + b"y" * (3 << 20) + b"\r\n"
    err = reject(tmp_path, data, catalogue, max_upload_bytes=MULTIPART_OVERHEAD + 100)
    assert err.reason == (
        "Line 2 is longer than 1048576 bytes: no record that long fits in an upload "
        "(is it a CSV file with line breaks?)."
    )


def test_utf8_bom_is_stripped(tmp_path: Path, catalogue: Catalogue) -> None:
    prepared = prepare(tmp_path, "\ufeffemail,city\r\na@x.com,Köln\r\n".encode(), catalogue)
    assert prepared.encoding == "utf-8-sig"
    assert prepared.uploads[0].path.read_bytes() == "email,city\r\na@x.com,Köln\r\n".encode()


def test_utf16_be_with_bom(tmp_path: Path, catalogue: Catalogue) -> None:
    data = "\ufeffemail\tcity\r\na@x.com\t東京\r\n".encode("utf-16-be")
    prepared = prepare(tmp_path, data, catalogue)
    assert (prepared.encoding, prepared.format) == ("utf-16-be", "tsv")
    assert prepared.uploads[0].path.read_bytes() == "email,city\r\na@x.com,東京\r\n".encode()


def test_non_utf8_guessed_as_cp1252(tmp_path: Path, catalogue: Catalogue) -> None:
    data = "email;city;company\r\na@x.com;Düsseldorf;Müller & Söhne €\r\n".encode("cp1252")
    prepared = prepare(tmp_path, data, catalogue)
    assert (prepared.encoding, prepared.format) == ("cp1252", "ssv")
    assert rows_of(prepared) == [(2, ["a@x.com", "Düsseldorf", "Müller & Söhne €"])]


def test_guessing_disabled_rejects(tmp_path: Path, catalogue: Catalogue) -> None:
    data = "email,city\r\na@x.com,Düsseldorf\r\n".encode("cp1252")
    err = reject(tmp_path, data, catalogue, allow_encoding_guess=False)
    assert err.reason == (
        "The file is not valid UTF-8 (first bad byte near offset 21) and encoding guessing is "
        "off (intake.allow_encoding_guess); save it as UTF-8."
    )


def test_custom_objects_keep_their_header(tmp_path: Path) -> None:
    prepared = prepare(tmp_path, b" vin ,model\nV1,T\n", None, lookup_field="vin")
    assert prepared.header.names == ["vin", "model"]
    assert rows_of(prepared) == [(2, ["V1", "T"])]


def test_duplicates_past_the_exact_limit_are_read_back_from_the_uploads(
    tmp_path: Path, catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.intake import duplicates

    monkeypatch.setattr(duplicates, "EXACT_LIMIT", 4)
    emails = [f"u{i}@x.com" for i in range(2000)]
    emails += ["U1@x.com", "u1500@X.com", "u1500@x.com"]  # one early, one late value repeated
    data = ("email\r\n" + "".join(f"{e}\r\n" for e in emails)).encode()
    prepared = prepare(tmp_path, data, catalogue, max_upload_bytes=MULTIPART_OVERHEAD + 5000)
    assert len(prepared.uploads) > 3
    assert prepared.duplicates == 3
    assert prepared.duplicate_list == [
        {"value": "u1@x.com", "rows": [3, 2002], "count": 2},
        {"value": "u1500@x.com", "rows": [1502, 2003, 2004], "count": 3},
    ]
    assert not (tmp_path / "dups").exists()


def test_damaged_utf8_is_refused_not_guessed(tmp_path: Path, catalogue: Catalogue) -> None:
    rows = "".join(f"u{i}@x.com,Zoë,Müller\r\n" for i in range(50)).encode()
    data = b"email,firstName,lastName\r\n" + rows + b"bad@x.com,Zo\xeb,M\r\n" + rows
    err = reject(tmp_path, data, catalogue)
    offset = data.index(b"\xeb")
    assert err.reason == (
        f"The file is UTF-8 but 1 byte sequence is not (first at offset {offset}): it looks "
        "damaged; fix those bytes or save it as UTF-8 again."
    )


def test_single_byte_text_without_utf8_sequences_is_guessed(
    tmp_path: Path, catalogue: Catalogue
) -> None:
    data = "email,lastName\r\n" + "".join(f"u{i}@x.com,Müller\r\n" for i in range(20))
    prepared = prepare(tmp_path, data.encode("cp1252"), catalogue)
    assert prepared.encoding == "cp1252"
    assert rows_of(prepared)[0] == (2, ["u0@x.com", "Müller"])
