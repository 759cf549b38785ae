"""Row counts, final status and report content (orchestrator/results/report.py)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from orchestrator.models import FileRecord, FileStatus, PartRecord, UploadRecord, UploadStatus
from orchestrator.results.report import Ride, build_report, count_rows, decide_status, iso_utc

REPORT_KEYS = [
    "report_version",
    "file",
    "file_id",
    "sha256",
    "status",
    "error",
    "encoding",
    "format",
    "route",
    "instance",
    "forced",
    "rows",
    "duplicates",
    "duplicate_values",
    "uploads",
    "received_at",
    "finished_at",
]
UPLOAD_KEYS = [
    "seq",
    "upload_id",
    "batchId",
    "state",
    "marketoStatus",
    "status",
    "rows",
    "numOfLeadsProcessed",
    "numOfRowsFailed",
    "numOfRowsWithWarning",
    "message",
    "error",
    "attempts",
    "uncertain",
    "submissions",
    "batch",
]


def a_file(**kw: Any) -> FileRecord:
    base: dict[str, Any] = {
        "id": 7,
        "name": "leads.csv",
        "inbox_path": "/in/leads.csv",
        "work_path": "/w/7/source/leads.csv",
        "route": None,
        "instance": "default",
        "status": FileStatus.REPORTING,
        "sha256": "ab" * 32,
        "size_bytes": 100,
        "error": None,
        "encoding": "utf-8",
        "format": "csv",
        "rows_total": 10,
        "rows_rejected": 0,
        "duplicates": 0,
        "info": {},
        "received_at": 1_700_000_000.0,
        "updated_at": 1_700_000_000.0,
        "finished_at": None,
        "reported_at": None,
    }
    base.update(kw)
    return FileRecord(**base)


def an_upload(
    seq: int = 1, status: UploadStatus = UploadStatus.COMPLETE, **kw: Any
) -> Ride:
    """A one-part upload of file 7 (the part's own counts are the batch's)."""
    base: dict[str, Any] = {
        "id": seq,
        "path": f"/w/7/upload-{seq:04d}.csv",
        "size_bytes": 10,
        "rows": 5,
        "kind": "leads",
        "options": {},
        "status": status,
        "batch_id": 100 + seq,
        "marketo_status": "Complete",
        "num_leads_processed": 5,
        "num_rows_failed": 0,
        "num_rows_with_warning": 0,
        "message": "Import succeeded, 5 records imported (5 members)",
        "attempts": 1,
        "batch_failures": 0,
        "uncertain": 0,
        "not_before": None,
        "next_poll_at": None,
        "polls": 1,
        "error_code": None,
        "error": None,
        "created_at": 0.0,
        "updated_at": 0.0,
        "claimed_at": None,
        "submitted_at": None,
        "finished_at": None,
    }
    base.update(kw)
    upload = UploadRecord(**base)
    part = PartRecord(
        id=seq, file_id=7, seq=seq, path=upload.path, size_bytes=10, header_bytes=0,
        rows=upload.rows, kind="leads", options={}, pack_key=None, queued_at=0.0, send_by=None,
        upload_id=upload.id, first_row=0,
        num_leads_processed=upload.num_leads_processed if status is UploadStatus.COMPLETE
        else None,
        num_rows_failed=upload.num_rows_failed if status is UploadStatus.COMPLETE else None,
        num_rows_with_warning=upload.num_rows_with_warning
        if status is UploadStatus.COMPLETE else None,
    )
    return Ride(part, upload)


def test_counts_of_a_clean_file() -> None:
    rows = count_rows(a_file(), [an_upload(1), an_upload(2)])
    assert rows.as_dict() == {"total": 10, "imported": 10, "failed": 0, "warned": 0, "rejected": 0}


def test_warnings_alone_keep_a_file_complete() -> None:
    uploads = [an_upload(1, num_rows_with_warning=5), an_upload(2, num_rows_with_warning=1)]
    rows = count_rows(a_file(), uploads)
    assert rows.warned == 6
    assert decide_status(a_file(), uploads, rows) == (FileStatus.COMPLETE, None)


def test_counts_with_failures_warnings_rejections_and_a_dead_upload() -> None:
    uploads = [
        an_upload(1, num_leads_processed=3, num_rows_failed=2, num_rows_with_warning=1),
        an_upload(
            2,
            UploadStatus.FAILED,
            marketo_status="Failed",
            num_leads_processed=2,
            num_rows_failed=0,
            message="Import failed: boom",
        ),
    ]
    rows = count_rows(a_file(rows_total=12, rows_rejected=2), uploads)
    assert rows.as_dict() == {"total": 12, "imported": 3, "failed": 7, "warned": 1, "rejected": 2}


@pytest.mark.parametrize(
    ("statuses", "failed_rows", "rejected", "expected"),
    [
        ((UploadStatus.COMPLETE,), 0, 0, FileStatus.COMPLETE),
        ((UploadStatus.COMPLETE,), 2, 0, FileStatus.PARTIAL),  # rows failed at Marketo
        ((UploadStatus.COMPLETE,), 0, 3, FileStatus.PARTIAL),  # rows rejected locally
        ((UploadStatus.COMPLETE, UploadStatus.FAILED), 0, 0, FileStatus.PARTIAL),
        ((UploadStatus.COMPLETE, UploadStatus.REJECTED), 1, 1, FileStatus.PARTIAL),
        ((UploadStatus.FAILED,), 0, 0, FileStatus.REJECTED),
        ((UploadStatus.REJECTED, UploadStatus.FAILED), 0, 2, FileStatus.REJECTED),
        ((UploadStatus.COMPLETE,), 5, 0, FileStatus.REJECTED),  # every row failed at Marketo
        ((), 0, 4, FileStatus.REJECTED),  # every row rejected locally: no uploads
    ],
)
def test_final_status(
    statuses: tuple[UploadStatus, ...], failed_rows: int, rejected: int, expected: FileStatus
) -> None:
    uploads = [
        an_upload(
            i + 1,
            s,
            num_rows_failed=failed_rows if s is UploadStatus.COMPLETE else None,
            num_leads_processed=5 - failed_rows if s is UploadStatus.COMPLETE else None,
            error_code="1006" if s is UploadStatus.REJECTED else None,
            error="Field 'x' not found" if s is UploadStatus.REJECTED else None,
        )
        for i, s in enumerate(statuses)
    ]
    file = a_file(rows_total=5 * len(statuses) + rejected, rows_rejected=rejected)
    rows = count_rows(file, uploads)
    status, error = decide_status(file, uploads, rows)
    assert status is expected
    assert (error is None) == (expected is FileStatus.COMPLETE)
    dead = any(u.upload.status is not UploadStatus.COMPLETE for u in uploads)
    assert (error is not None and "leadflow retry 7" in error) == dead


def test_counts_invariant_over_many_combinations() -> None:
    statuses = [UploadStatus.COMPLETE, UploadStatus.FAILED, UploadStatus.REJECTED]
    for combo in itertools.product(statuses, repeat=3):
        for failed, warned, rejected in itertools.product((0, 1, 4), (0, 2), (0, 3)):
            uploads = [
                an_upload(
                    i + 1,
                    s,
                    rows=4,
                    num_leads_processed=4 - failed,
                    num_rows_failed=failed,
                    num_rows_with_warning=min(warned, 4 - failed),
                )
                for i, s in enumerate(combo)
            ]
            rows = count_rows(a_file(rows_total=12 + rejected, rows_rejected=rejected), uploads)
            assert rows.total == rows.imported + rows.failed + rows.rejected == 12 + rejected
            assert rows.warned <= rows.imported


@pytest.mark.parametrize("status", [FileStatus.REJECTED, FileStatus.EMPTY, FileStatus.DUPLICATE])
def test_intake_terminal_files_count_every_row_rejected(status: FileStatus) -> None:
    rows = count_rows(a_file(status=status, rows_total=6, rows_rejected=0), [])
    assert rows.as_dict() == {"total": 6, "imported": 0, "failed": 0, "warned": 0, "rejected": 6}


def test_report_has_the_documented_keys_and_iso_times() -> None:
    file = a_file(
        route="events", duplicates=1, info={"duplicates": [{"value": "a@x", "rows": [2, 5]}]}
    )
    dead = an_upload(
        2,
        UploadStatus.REJECTED,
        batch_id=None,
        marketo_status=None,
        error_code="1006",
        error="Field 'foo' not found",
        message=None,
    )
    uploads = [an_upload(1), dead]
    rows = count_rows(file, uploads)
    status, error = decide_status(file, uploads, rows)
    report = build_report(file, uploads, rows, status, error, 1_700_000_090.5)
    assert list(report) == REPORT_KEYS
    assert [list(u) for u in report["uploads"]] == [UPLOAD_KEYS, UPLOAD_KEYS]
    assert report["status"] == "partial"
    assert report["received_at"] == "2023-11-14T22:13:20Z"
    assert report["finished_at"] == "2023-11-14T22:14:50Z"
    # Marketo's message verbatim (a refused upload has no batch, so none); leadflow's reason
    # under its own name.
    assert report["uploads"][1]["message"] is None
    assert report["uploads"][1]["error"] == (
        "upload 2 rejected by Marketo: 1006 Field 'foo' not found"
    )
    assert report["uploads"][0]["error"] is None
    assert (report["uploads"][1]["state"], report["uploads"][1]["marketoStatus"]) == (
        "rejected", None
    )
    assert report["duplicate_values"] == [{"value": "a@x", "rows": [2, 5]}]
    json.dumps(report)


def test_iso_utc() -> None:
    assert iso_utc(None) is None
    assert iso_utc(0) == "1970-01-01T00:00:00Z"
