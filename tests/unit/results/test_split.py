"""Splitting a shared batch's failures and warnings between the files that rode in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.models import PartRecord, UploadRecord, UploadStatus
from orchestrator.results.split import read_split_meta, split_batch, split_name, write_splits
from orchestrator.results.write import read_spill

HEADER = "email,firstName,unsubscribed"


def upload(path: Path, **kw: Any) -> UploadRecord:
    base: dict[str, Any] = {
        "id": 9, "path": str(path), "size_bytes": 1, "rows": 7, "kind": "leads",
        "options": {"format": "csv", "lookupField": "email"}, "status": UploadStatus.COMPLETE,
        "batch_id": 1009, "marketo_status": "Complete", "num_leads_processed": 5,
        "num_rows_failed": 2, "num_rows_with_warning": 1, "message": "ok", "attempts": 1,
        "batch_failures": 0, "uncertain": 0, "not_before": None, "next_poll_at": None,
        "polls": 1, "error_code": None, "error": None, "created_at": 0.0, "updated_at": 0.0,
        "claimed_at": None, "submitted_at": None, "finished_at": None,
    }
    base.update(kw)
    return UploadRecord(**base)


def part(part_id: int, file_id: int, first_row: int, rows: int, folder: Path) -> PartRecord:
    folder.mkdir(parents=True, exist_ok=True)
    return PartRecord(
        id=part_id, file_id=file_id, seq=1, path=str(folder / "upload-0001.csv"),
        size_bytes=1, header_bytes=len(HEADER) + 2, rows=rows, kind="leads", options={},
        pack_key="k", queued_at=0.0, send_by=None, upload_id=9, first_row=first_row,
        num_leads_processed=None, num_rows_failed=None, num_rows_with_warning=None,
    )


def pack(
    tmp_path: Path, warned: int = 0
) -> tuple[UploadRecord, list[PartRecord], dict[int, list[int]]]:
    """Three files in one pack: rows 0-2 (file 1), 3-4 (file 2), 5-6 (file 3)."""
    rows = [
        "a@x.org,Ann,false", "b@x.org,Bo,y", "c@x.org,Cy,false",  # file 1, lines 2, 3, 5
        "same@x.org,Twin,y", "d(at)x.org,Dee,false",              # file 2, lines 2, 3
        "same@x.org,Twin,y", "e@x.org,Eve,false",                 # file 3, lines 4, 7
    ]
    path = tmp_path / "pack.csv"
    path.write_text("\r\n".join([HEADER, *rows]) + "\r\n")
    parts = [part(1, 1, 0, 3, tmp_path / "w1"), part(2, 2, 3, 2, tmp_path / "w2"),
             part(3, 3, 5, 2, tmp_path / "w3")]
    lines = {1: [2, 3, 5], 2: [2, 3], 3: [4, 7]}
    return upload(path, num_rows_failed=3, num_leads_processed=4,
                  num_rows_with_warning=warned), parts, lines


def reported(path: Path, reason_column: str, rows: list[str]) -> Path:
    path.write_text("\r\n".join([f"{HEADER},{reason_column}", *rows]) + "\r\n")
    return path


def test_each_reported_row_goes_to_its_own_file_with_its_source_row(tmp_path: Path) -> None:
    up, parts, lines = pack(tmp_path, warned=1)
    bad = "Invalid data type in field Unsubscribed"
    failures = reported(tmp_path / "f.csv", "Import Failure Reason", [
        f"same@x.org,Twin,y,{bad}", f"b@x.org,Bo,y,{bad}", f"same@x.org,Twin,y,{bad}"])
    warnings = reported(tmp_path / "w.csv", "Import Warning Reason",
                        ["d(at)x.org,Dee,false,Invalid email address"])
    header, splits = split_batch(up, parts, lines, {"failures": failures, "warnings": warnings})
    assert header == HEADER.split(",")
    got = {s.part.file_id: (s.processed, s.failed, s.warned) for s in splits}
    assert got == {1: (2, 1, 0), 2: (1, 1, 1), 3: (1, 1, 0)}
    assert [r[0] for r in splits[0].failures] == [3]
    assert [r[0] for r in splits[1].failures] == [2] and [r[0] for r in splits[1].warnings] == [3]
    assert [r[0] for r in splits[2].failures] == [4]  # the twin row of file 3: its own line
    assert all(not s.notes for s in splits)
    assert sum(s.failed for s in splits) == up.num_rows_failed


def test_split_files_are_written_into_each_files_work_folder(tmp_path: Path) -> None:
    up, parts, lines = pack(tmp_path)
    failures = reported(tmp_path / "f.csv", "Import Failure Reason",
                        ["b@x.org,Bo,y,bad", "same@x.org,Twin,y,bad", "same@x.org,Twin,y,bad"])
    header, splits = split_batch(up, parts, lines, {"failures": failures})
    assert write_splits(up, header, splits) == 3
    meta = read_split_meta(parts[1])
    assert meta == {"header": header, "failures": 1, "warnings": 0, "notes": []}
    spill = Path(parts[2].path).parent / split_name(9, "failures")
    assert list(read_spill(spill)) == [(4, ("same@x.org", "Twin", "y"), "bad")]
    assert not list((tmp_path / "w1").glob("*.tmp"))


def test_an_unmatched_row_goes_to_the_first_file_with_a_note(tmp_path: Path) -> None:
    up, parts, lines = pack(tmp_path)
    failures = reported(tmp_path / "f.csv", "Import Failure Reason", [
        "b@x.org,Bo,y,bad", "same@x.org,Twin,y,bad", "ghost@x.org,Nobody,y,bad"])
    _, splits = split_batch(up, parts, lines, {"failures": failures})
    assert [r[0] for r in splits[0].failures] == [3, None]
    assert splits[0].failed == 2 and "matched no source row" in splits[0].notes[0]
    assert not splits[1].notes


def test_a_missing_marketo_file_is_counted_once_and_told_to_every_file(tmp_path: Path) -> None:
    up, parts, lines = pack(tmp_path)
    _, splits = split_batch(up, parts, lines, {"failures": None})
    assert [s.failed for s in splits] == [3, 0, 0]
    assert all("was not available" in s.notes[0] for s in splits)
    assert "first file of the batch" in splits[1].notes[0]


def test_a_one_part_upload_keeps_marketos_counters(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text(f"{HEADER}\r\na@x.org,Ann,y\r\nb@x.org,Bo,false\r\n")
    alone = part(1, 1, 0, 2, tmp_path / "w1")
    up = upload(path, rows=2, num_leads_processed=1, num_rows_failed=1, num_rows_with_warning=0)
    failures = reported(tmp_path / "f.csv", "Import Failure Reason", ["a@x.org,Ann,y,bad"])
    _, (split,) = split_batch(up, [alone], {1: [2, 3]}, {"failures": failures})
    assert (split.processed, split.failed, split.warned) == (1, 1, 0)
    assert [r[0] for r in split.failures] == [2]


def test_a_clean_batch_needs_no_file(tmp_path: Path) -> None:
    up, parts, _ = pack(tmp_path)
    clean = upload(Path(up.path), num_rows_failed=0, num_rows_with_warning=0,
                   num_leads_processed=7)
    header, splits = split_batch(clean, parts, {}, {})
    assert header == [] and [(s.processed, s.failed) for s in splits] == [(3, 0), (2, 0), (2, 0)]
    assert write_splits(clean, header, splits) == 0
    assert json.dumps([s.part.id for s in splits]) == "[1, 2, 3]"
