"""The reporter when things go wrong: unwritable results, full disk, crashes, Marketo errors."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from pathlib import Path

import pytest
from results_helpers import FakeClient, end_upload, marketo_report, prepare_file, read_csv
from structlog.testing import capture_logs

from orchestrator.errors import ApiPermanentError, ApiTransientError
from orchestrator.models import FileStatus, UploadStatus
from orchestrator.places import packs_dir
from orchestrator.results import Reporter
from orchestrator.results import reporter as results
from orchestrator.results.source_rows import FAILURE_REASON
from orchestrator.settings import Settings
from orchestrator.store import Store

HEADER = ["email", "firstName"]
ROWS = [["a@x.com", "Ann"], ["", "Bob"], ["c@x.com", "Cy"]]


async def _ready(store: Store, settings: Settings, name: str = "f.csv", batch_id: int = 5):
    prep = await prepare_file(store, settings, name, HEADER, ROWS)
    await end_upload(store, prep.uploads[0], batch_id=batch_id, failed=1)
    client = FakeClient()
    client.failures[batch_id] = marketo_report(HEADER, [(ROWS[1], "no email")], FAILURE_REASON)
    return prep, client


def _break_results(settings: Settings, how: str) -> None:
    if how == "read-only":
        settings.paths.results.chmod(0o555)
    else:  # a file where the folder should be: unwritable even for root
        settings.paths.results.rmdir()
        settings.paths.results.write_text("not a folder")


def _mend_results(settings: Settings, how: str) -> None:
    if how == "read-only":
        settings.paths.results.chmod(0o755)
    elif settings.paths.results.is_file():
        settings.paths.results.unlink()
        settings.paths.results.mkdir()


@pytest.mark.parametrize(
    ("how", "errno_name"),
    [
        pytest.param(
            "read-only", "EACCES",
            marks=pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions"),
        ),
        ("not-a-folder", "ENOTDIR"),
    ],
)
async def test_unwritable_results_folder_is_retried_later_and_nothing_is_lost(
    store: Store, settings: Settings, clock, how: str, errno_name: str
) -> None:
    prep, client = await _ready(store, settings)
    _break_results(settings, how)
    reporter = Reporter(settings, store, client, clock)
    try:
        with capture_logs() as logs:
            assert await reporter.report_ready() == 0
        failed = [e for e in logs if e["event"] == "results_write_failed"]
        assert len(failed) == 1
        assert failed[0]["file_id"] == prep.file.id and failed[0]["errno"] == errno_name
        assert failed[0]["retry_in_s"] == 30.0
        current = await store.get_file(prep.file.id)
        assert current is not None
        assert current.status is FileStatus.REPORTING and current.reported_at is None
        assert prep.source.is_file() and not any(settings.paths.archive.iterdir())
        assert reporter.next_attempt_at() == clock.now + 30.0
        errors = await store.recent_errors()
        assert errors[0]["file_id"] == prep.file.id and errors[0]["code"] == errno_name
        # fixed, but the retry time has not come: nothing happens, no new download either
        _mend_results(settings, how)
        clock.now += 29
        assert await reporter.report_ready() == 0
        assert client.calls == [("failures", 5)]
        clock.now += 1
        assert await reporter.report_ready() == 1
    finally:
        _mend_results(settings, how)
    assert client.calls == [("failures", 5)]  # the downloaded file was reused
    assert reporter.next_attempt_at() is None
    final = await store.get_file(prep.file.id)
    assert final is not None and final.status is FileStatus.PARTIAL
    failures = read_csv(settings.paths.results / f"f.csv.{prep.file.id}" / "failures.csv")
    assert failures[1:] == [["3", "", "Bob", "no email"]]


async def test_disk_full_while_writing_is_retried_and_leaves_no_half_folder(
    store: Store, settings: Settings, clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    prep, client = await _ready(store, settings)

    def full(path: Path, data: dict[str, object]) -> None:
        path.write_bytes(b"{")  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(results, "write_json", full)
    reporter = Reporter(settings, store, client, clock)
    with capture_logs() as logs:
        assert await reporter.report_ready() == 0
    (event,) = [e for e in logs if e["event"] == "results_write_failed"]
    assert event["errno"] == "ENOSPC"
    assert list(settings.paths.results.iterdir()) == []  # the .tmp folder was removed
    current = await store.get_file(prep.file.id)
    assert current is not None and current.status is FileStatus.REPORTING
    assert prep.source.is_file()

    monkeypatch.undo()
    clock.now += 30
    assert await reporter.report_ready() == 1
    report = json.loads(
        (settings.paths.results / f"f.csv.{prep.file.id}" / "report.json").read_text()
    )
    assert report["status"] == "partial"


async def test_a_crash_mid_report_is_repaired_by_the_next_pass(
    store: Store, settings: Settings, clock
) -> None:
    prep, client = await _ready(store, settings)
    reporter = Reporter(settings, store, client, clock)
    # first run: queued -> reporting; then "crash" after the folder was half-built, an older
    # results folder exists (from before a retry) and the source was already archived
    await store.transition_file(prep.file.id, FileStatus.QUEUED, FileStatus.REPORTING)
    final = settings.paths.results / f"f.csv.{prep.file.id}"
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir()
    (tmp / "failures.csv").write_text("half")
    final.mkdir()
    (final / "report.json").write_text("{}")
    (final / "warnings.csv").write_text("stale")
    archived = settings.paths.archive / f"{prep.file.id}-f.csv"
    prep.source.rename(archived)

    assert await reporter.report_ready() == 1
    assert sorted(p.name for p in settings.paths.results.iterdir()) == [final.name]
    assert sorted(p.name for p in final.iterdir()) == ["failures.csv", "report.json"]
    assert json.loads((final / "report.json").read_text())["rows"]["failed"] == 1
    assert archived.read_bytes() == prep.source_bytes
    done = await store.get_file(prep.file.id)
    assert done is not None and done.info["archived_path"] == str(archived)


async def test_transient_marketo_error_postpones_the_report(
    store: Store, settings: Settings, clock
) -> None:
    prep, client = await _ready(store, settings)
    client.errors.append(ApiTransientError("604", "Request timed out"))
    reporter = Reporter(settings, store, client, clock)
    with capture_logs() as logs:
        assert await reporter.report_ready() == 0
    assert [e["event"] for e in logs if e["event"].startswith("results_")] == [
        "results_fetch_failed"
    ]
    # The batch could not be split yet, so the file waits for it (still queued).
    waiting = await store.get_file(prep.file.id)
    assert waiting is not None and waiting.status is FileStatus.QUEUED
    assert not any(settings.paths.results.iterdir())
    clock.now += 30
    assert await reporter.report_ready() == 1
    assert client.calls == [("failures", 5), ("failures", 5)]


async def test_expired_batch_id_reports_without_the_rows(
    store: Store, settings: Settings, clock
) -> None:
    prep, client = await _ready(store, settings)
    client.errors.append(ApiPermanentError("1013", "Object not found"))
    assert await Reporter(settings, store, client, clock).report_ready() == 1
    final = await store.get_file(prep.file.id)
    assert final is not None and final.status is FileStatus.PARTIAL
    assert final.error is not None and "see failures.csv" in final.error
    assert not (settings.paths.results / f"f.csv.{prep.file.id}" / "failures.csv").exists()


async def test_one_bad_file_does_not_block_the_others(
    store: Store, settings: Settings, clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad, client = await _ready(store, settings, "bad.csv", batch_id=5)
    good = await prepare_file(store, settings, "good.csv", HEADER, [["g@x.com", "Gus"]])
    await end_upload(store, good.uploads[0], batch_id=6)
    original = results.write_rows

    def explode(file, plans, tmp, rejections):  # type: ignore[no-untyped-def]
        if file.id == bad.file.id:
            raise ValueError("a bug")
        return original(file, plans, tmp, rejections)

    monkeypatch.setattr(results, "write_rows", explode)
    with capture_logs() as logs:
        assert await Reporter(settings, store, client, clock).report_ready() == 1
    assert any(e["event"] == "results_failed" and e["file_id"] == bad.file.id for e in logs)
    done = await store.get_file(good.file.id)
    assert done is not None and done.status is FileStatus.COMPLETE  # every row imported


async def test_work_folder_left_by_a_stop_after_the_report_is_removed_at_the_next_start(
    store: Store, settings: Settings, clock
) -> None:
    """A kill between a file's final transition and the removal of its work folder left the
    folder for good (the crash soak saw it); the next start removes it
    (``remove_finished_work_dirs``, called by the daemon's recovery), and keeps the folders of
    files with uploads to retry."""
    done, client = await _ready(store, settings, "done.csv", batch_id=5)
    kept = await prepare_file(store, settings, "kept.csv", HEADER, [["k@x.com", "Kay"]])
    await end_upload(store, kept.uploads[0], UploadStatus.FAILED, batch_id=6)
    assert await Reporter(settings, store, client, clock).report_ready() == 2
    assert not done.work_dir.exists() and kept.work_dir.is_dir()
    # As if the daemon had been killed right after the final transition:
    done.work_dir.mkdir()
    (done.work_dir / "upload-0001.csv").write_text("email\r\na@x.com\r\n")
    with capture_logs() as logs:
        assert await Reporter(settings, store, client, clock).remove_finished_work_dirs() == 1
    assert not done.work_dir.exists()
    assert kept.work_dir.is_dir() and any(kept.work_dir.iterdir())
    removed = [e for e in logs if e["event"] == "work_dir_removed"]
    assert [e["file_id"] for e in removed] == [done.file.id]


async def test_pack_files_left_by_a_stop_after_the_reports_are_removed_at_the_next_start(
    store: Store, settings: Settings, clock
) -> None:
    """A kill between the last report of a batch and the removal of its pack file and fetched
    Marketo files left them for good (the crash soak saw ``work/packs/pack-4-6.csv``); the
    next start removes them (``remove_finished_packs``), and keeps those of open batches."""
    done, client = await _ready(store, settings, "done.csv", batch_id=5)
    open_ = await prepare_file(store, settings, "open.csv", HEADER, [["o@x.com", "Oz"]])
    assert await Reporter(settings, store, client, clock).report_ready() == 1
    packs = packs_dir(settings.paths)
    packs.mkdir(parents=True, exist_ok=True)
    # As if the daemon had been killed right after the batch's last report: its pack file
    # (the upload's path) and a fetched failures file are still there.
    pack, fetched = packs / "pack-1-1.csv", packs / f"marketo-failures-{done.uploads[0].id}-5.csv"
    pending = packs / "pack-2-2.csv"
    for path in (pack, fetched, pending):
        path.write_text("email\r\na@x.com\r\n")
    db = sqlite3.connect(settings.paths.database)
    with db:
        db.execute("UPDATE uploads SET path = ? WHERE id = ?", (str(pack), done.uploads[0].id))
        db.execute("UPDATE uploads SET path = ? WHERE id = ?", (str(pending), open_.uploads[0].id))
    db.close()
    with capture_logs() as logs:
        assert await Reporter(settings, store, client, clock).remove_finished_packs() == 1
    assert not pack.exists() and not fetched.exists()
    assert pending.exists()  # its batch is still open
    assert [e["upload_id"] for e in logs if e["event"] == "pack_files_removed"] == [
        done.uploads[0].id]
