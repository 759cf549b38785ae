from __future__ import annotations

import sqlite3
from itertools import product

import pytest

from orchestrator.models import (
    FILE_TRANSITIONS,
    UPLOAD_TRANSITIONS,
    FileStatus,
    UploadStatus,
    can_transition_file,
    can_transition_upload,
    pack_rows,
    unpack_rows,
)
from orchestrator.store.migrate import load_migrations


def db_pairs() -> set[tuple[str, str, str]]:
    conn = sqlite3.connect(":memory:")
    for migration in load_migrations():
        conn.executescript(migration.sql)
    return set(conn.execute("SELECT entity, from_status, to_status FROM allowed_transitions"))


def test_enums_and_tables_cover_every_status() -> None:
    assert set(FILE_TRANSITIONS) == set(FileStatus)
    assert set(UPLOAD_TRANSITIONS) == set(UploadStatus)


def test_database_table_mirrors_models() -> None:
    expected = {("file", a.value, b.value) for a, bs in FILE_TRANSITIONS.items() for b in bs}
    expected |= {("upload", a.value, b.value) for a, bs in UPLOAD_TRANSITIONS.items() for b in bs}
    assert db_pairs() == expected


@pytest.mark.parametrize(("old", "new"), list(product(FileStatus, FileStatus)))
def test_file_transition_pairs(old: FileStatus, new: FileStatus) -> None:
    assert can_transition_file(old, new) == (new in FILE_TRANSITIONS[old])


@pytest.mark.parametrize(("old", "new"), list(product(UploadStatus, UploadStatus)))
def test_upload_transition_pairs(old: UploadStatus, new: UploadStatus) -> None:
    assert can_transition_upload(old, new) == (new in UPLOAD_TRANSITIONS[old])


def test_key_paths_of_the_lifecycle() -> None:
    u = UploadStatus
    assert can_transition_upload(u.QUEUED, u.SUBMITTING)
    assert can_transition_upload(u.SUBMITTING, u.QUEUED)  # 1016 / uncertain
    assert not can_transition_upload(u.QUEUED, u.COMPLETE)
    assert not can_transition_upload(u.COMPLETE, u.QUEUED)
    f = FileStatus
    assert can_transition_file(f.RECEIVED, f.QUEUED)
    assert not can_transition_file(f.COMPLETE, f.QUEUED)


def test_source_rows_round_trip() -> None:
    rows = [2, 3, 5, 4_000_000_000]
    assert unpack_rows(pack_rows(rows)) == rows
    assert len(pack_rows(rows)) == 16
