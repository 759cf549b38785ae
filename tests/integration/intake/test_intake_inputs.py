"""Every file of ../shared/inputs through a real Intake and Store: exact uploads or reason."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from intake_support import parse, uploads_of

from orchestrator.intake import MULTIPART_OVERHEAD, Intake
from orchestrator.models import FileRecord, FileStatus
from orchestrator.store import Store


async def drop_and_scan(intake: Intake, store: Store, source: Path) -> FileRecord:
    shutil.copy(source, intake.settings.paths.inbox / source.name)
    assert await intake.scan_once() == 1
    files = await store.files_in(FileStatus.QUEUED) + await store.files_in(
        FileStatus.REPORTING
    ) + await store.files_in(FileStatus.EMPTY) + await store.files_in(FileStatus.REJECTED)
    assert len(files) == 1
    assert not (intake.settings.paths.inbox / source.name).exists()
    return files[0]


async def test_quoted_commas_quotes_newlines(
    shared_inputs: Path, make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake()
    record = await drop_and_scan(intake, store, shared_inputs / "quoted-commas-quotes-newlines.csv")
    assert (record.status, record.encoding, record.format) == (FileStatus.QUEUED, "utf-8", "csv")
    assert (record.rows_total, record.rows_rejected, record.duplicates) == (3, 0, 0)
    assert await uploads_of(store, record) == [
        (
            (b"email,firstName,lastName,company,address\r\n"
            b'r12a@example.com,Ana,Lee,"Acme, Inc.",1 Main St\r\n'
            b'r12b@example.com,Bo,"O""Neil",Beta LLC,"Suite 5\nBuilding B"\r\n'
            b'r12c@example.com,Cy,Diaz,"Gamma ""G"" Co",2 Side St\r\n'),
            [2, 3, 5],
        )
    ]
    (upload,) = await store.parts_of_file(record.id)
    assert upload.options == {"format": "csv", "lookupField": "email"}
    assert upload.kind == "leads" and upload.rows == 3
    # the source is in the work folder, as recorded
    assert Path(record.work_path).read_bytes() == (
        shared_inputs / "quoted-commas-quotes-newlines.csv"
    ).read_bytes()


async def test_empty_lookup_in_last_column(
    shared_inputs: Path, make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake()
    record = await drop_and_scan(intake, store, shared_inputs / "empty-lookup-in-last-column.csv")
    assert record.status is FileStatus.QUEUED
    assert (record.rows_total, record.rows_rejected) == (3, 1)
    assert await uploads_of(store, record) == [
        (
            (b"firstName,lastName,phone,email\r\n"
            b"Ana,Lee,555-0101,r13a@example.com\r\n"
            b"Cy,Diaz,555-0103,r13c@example.com\r\n"),
            [2, 4],
        )
    ]
    assert Path(record.info["rejections_path"]).read_bytes() == (
        b"sourceRow,firstName,lastName,phone,email,Import Failure Reason\r\n"
        b"3,Bo,Kim,555-0102,,Value for lookup field 'email' not found\r\n"
    )


async def test_excel_unicode_text_utf16le_tabs(
    shared_inputs: Path, make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake()
    name = "excel-unicode-text-utf16le-tabs.csv"
    record = await drop_and_scan(intake, store, shared_inputs / name)
    assert (record.status, record.encoding, record.format) == (
        FileStatus.QUEUED, "utf-16-le", "tsv"
    )
    expected = (
        "email,firstName,lastName,city\r\n"
        "u18a@example.com,山田,太郎,東京\r\n"
        "u18b@example.com,Zoë,Müller,Köln\r\n"
    ).encode()
    assert await uploads_of(store, record) == [(expected, [2, 3])]
    assert not expected.startswith(b"\xef\xbb\xbf")
    assert record.info["header"] == ["email", "firstName", "lastName", "city"]


async def test_windows_1252_semicolons(
    shared_inputs: Path, make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake()
    record = await drop_and_scan(intake, store, shared_inputs / "windows-1252-semicolons.csv")
    assert (record.status, record.encoding, record.format) == (FileStatus.QUEUED, "cp1252", "ssv")
    assert await uploads_of(store, record) == [
        (
            "email,firstName,lastName,company\r\n"
            "w19a@example.com,René,François,Société A\r\n"
            "w19b@example.com,Jörg,Straße,Bäckerei €\r\n".encode(),
            [2, 3],
        )
    ]


async def test_tabs_in_a_dot_csv(
    shared_inputs: Path, make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake()
    record = await drop_and_scan(intake, store, shared_inputs / "tabs-in-a-dot-csv.csv")
    assert (record.status, record.format) == (FileStatus.QUEUED, "tsv")
    assert await uploads_of(store, record) == [
        (
            b"email,firstName,lastName\r\nx20a@example.com,Ana,Lee\r\nx20b@example.com,Bo,Kim\r\n",
            [2, 3],
        )
    ]


async def test_header_then_blank_lines(
    shared_inputs: Path, make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake()
    record = await drop_and_scan(intake, store, shared_inputs / "header-then-blank-lines.csv")
    assert record.status is FileStatus.EMPTY
    assert record.error == "The file has a header but no data rows."
    assert await store.parts_of_file(record.id) == []
    assert record.reported_at is None  # the Reporter writes report.json and moves the source
    assert Path(record.work_path).is_file()


async def test_over_10mb_is_split_between_records(
    shared_inputs: Path, make_intake: Callable[..., Intake], store: Store, tmp_path: Path
) -> None:
    generated = tmp_path / "big" / "over-10mb.csv"
    generated.parent.mkdir()
    subprocess.run(
        [sys.executable, str(shared_inputs / "make_over_10mb.py"), str(generated)],
        check=True,
        capture_output=True,
    )
    source = generated.read_bytes()
    intake = make_intake()
    record = await drop_and_scan(intake, store, generated)
    assert record.status is FileStatus.QUEUED
    uploads = await uploads_of(store, record)
    assert len(uploads) == 2
    limit = intake.settings.limits.max_upload_bytes
    header = b"email,firstName,lastName,address\r\n"
    counted = 0
    lines: list[int] = []
    for body, rows in uploads:
        assert len(body) + MULTIPART_OVERHEAD <= limit
        assert body.startswith(header) and body.endswith(b'Tower B"\r\n')
        records = parse(body)  # each upload parses into whole records: split between records
        assert records[0] == ["email", "firstName", "lastName", "address"]
        assert len(records) - 1 == len(rows)
        assert {len(r) for r in records} == {4}
        counted += len(rows)
        lines.extend(rows)
    total = source.count(b"\r\n") - 1
    assert record.rows_total == total == counted
    assert lines == [2 + 2 * i for i in range(total)]  # each record spans two lines
    # uploads hold the same bytes as the source, minus the repeated header: every row once,
    # in order, every value unchanged
    assert b"".join(body[len(header):] for body, _ in uploads) == source[len(header):]
