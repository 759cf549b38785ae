"""``leadflow submit`` and ``leadflow retry`` against a real database and real folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from results_helpers import FakeClient, end_upload, prepare_file
from store_helpers import form_waiting

from orchestrator.cli import cli
from orchestrator.commands.retry import retry_command
from orchestrator.commands.submit import submit_command
from orchestrator.models import FileStatus, UploadStatus
from orchestrator.results import Reporter
from orchestrator.settings import Settings
from orchestrator.store import Store

HEADER = ["email", "firstName"]


def _inbox_files(settings: Settings) -> list[str]:
    return sorted(
        str(p.relative_to(settings.paths.inbox))
        for p in settings.paths.inbox.rglob("*")
        if p.is_file()
    )


async def test_submit_copies_atomically_into_the_inbox(
    settings: Settings, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "leads.csv"
    source.write_bytes(b"email\r\na@x.com\r\n")
    assert await submit_command(settings, source, None) == 0
    assert await submit_command(settings, source, None) == 0  # same name: never overwritten
    assert await submit_command(settings, source, "events") == 0
    assert _inbox_files(settings) == ["events/leads.csv", "leads-2.csv", "leads.csv"]
    assert (settings.paths.inbox / "leads-2.csv").read_bytes() == source.read_bytes()
    assert source.is_file()  # a copy, not a move
    out = capsys.readouterr().out.splitlines()
    assert out[2] == (
        f"submitted {source} as {settings.paths.inbox / 'events' / 'leads.csv'} (route events);"
        " the daemon takes it from there"
    )


async def test_submit_refuses_unknown_route_and_missing_file(
    settings: Settings, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "leads.csv"
    source.write_text("email\n")
    assert await submit_command(settings, source, "nope") == 2
    assert "unknown route 'nope' (known routes: events)" in capsys.readouterr().err
    assert await submit_command(settings, tmp_path / "missing.csv", None) == 2
    assert "is not a readable file" in capsys.readouterr().err
    assert _inbox_files(settings) == []


async def test_submit_through_the_cli(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "x.csv"
    source.write_text("email\n")
    inbox = tmp_path / "in"
    code = await cli(["submit", str(source), "--set", f"paths.inbox={inbox}"])
    assert code == 0
    assert (inbox / "x.csv").read_text() == "email\n"
    assert "submitted" in capsys.readouterr().out


async def _partial_file(store: Store, settings: Settings, clock):
    rows = [["a@x.com", "Ann"], ["b@x.com", "Bob"], ["c@x.com", "Cy"], ["d@x.com", "Di"]]
    prep = await prepare_file(store, settings, "half.csv", HEADER, rows, chunks=[2, 2])
    await end_upload(store, prep.uploads[0], batch_id=11)
    await end_upload(store, prep.uploads[1], UploadStatus.FAILED, batch_id=12)
    assert await Reporter(settings, store, FakeClient(), clock).report_ready() == 1
    return prep


async def test_retry_requeues_failed_uploads_and_the_file_is_reported_again(
    store: Store, settings: Settings, clock, capsys: pytest.CaptureFixture[str]
) -> None:
    prep = await _partial_file(store, settings, clock)
    archived = settings.paths.archive / f"{prep.file.id}-half.csv"
    assert archived.is_file() and not prep.source.exists()

    assert await retry_command(settings, prep.file.id) == 0  # while `store` is open
    assert "1 upload(s) re-queued" in capsys.readouterr().out
    file = await store.get_file(prep.file.id)
    assert file is not None
    assert file.status is FileStatus.QUEUED
    assert file.reported_at is None and file.finished_at is None and file.error is None
    assert "archived_path" not in file.info
    assert prep.source.read_bytes() == prep.source_bytes and not archived.exists()
    # Only the part that rode in the failed upload waits again; the dead upload stays dead.
    dead = await store.get_upload(prep.uploads[1].id)
    assert dead is not None and dead.status is UploadStatus.FAILED
    parts = await store.parts_of_file(prep.file.id)
    assert [p.upload_id for p in parts] == [prep.uploads[0].id, None]
    assert parts[1].num_leads_processed is None and parts[1].send_by is not None
    kept = await store.get_upload(prep.uploads[0].id)
    assert kept is not None and kept.status is UploadStatus.COMPLETE and kept.batch_id == 11
    (again,) = await form_waiting(store, prep.file.id)

    await end_upload(store, again, batch_id=13)
    clock.now += 60
    assert await Reporter(settings, store, FakeClient(), clock).report_ready() == 1
    done = await store.get_file(prep.file.id)
    assert done is not None and done.status is FileStatus.COMPLETE
    folder = settings.paths.results / f"half.csv.{prep.file.id}"
    report = json.loads((folder / "report.json").read_text())
    assert report["rows"] == {"total": 4, "imported": 4, "failed": 0, "warned": 0, "rejected": 0}
    assert [u["batchId"] for u in report["uploads"]] == [11, 13]
    assert not (folder / "failures.csv").exists()  # the old report was replaced whole
    assert archived.read_bytes() == prep.source_bytes


async def test_retry_of_a_rejected_file_puts_it_back_into_its_route_folder(
    store: Store, settings: Settings, clock, capsys: pytest.CaptureFixture[str]
) -> None:
    file = await store.add_file(name="bad.csv", inbox_path="i", work_path="w", route="events",
                                size_bytes=1)
    source = settings.paths.work / str(file.id) / "source" / "bad.csv"
    source.parent.mkdir(parents=True)
    source.write_text("emial\nx\n")
    await store.transition_file(
        file.id, FileStatus.RECEIVED, FileStatus.REJECTED, error="no email column",
        info={"work_dir": str(source.parent.parent), "source_path": str(source)},
    )
    assert await Reporter(settings, store, FakeClient(), clock).report_ready() == 1
    assert await retry_command(settings, file.id) == 0
    back = settings.paths.inbox / "events" / "bad.csv"
    assert back.read_text() == "emial\nx\n"
    assert not any(settings.paths.rejected.iterdir())
    assert "taken as a new file" in capsys.readouterr().out
    old = await store.get_file(file.id)
    assert old is not None and old.status is FileStatus.REJECTED
    assert old.info["retaken_to"] == str(back)
    # a second retry has nothing left to take
    assert await retry_command(settings, file.id) == 1
    assert "no longer in" in capsys.readouterr().err


async def test_retry_refuses_what_cannot_be_retried(
    store: Store, settings: Settings, clock, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await retry_command(settings, 999) == 2
    assert "no file with id 999" in capsys.readouterr().err
    busy = await prepare_file(store, settings, "busy.csv", HEADER, [["a@x.com", "A"]])
    assert await retry_command(settings, busy.file.id) == 1
    assert "queued and not finished" in capsys.readouterr().err
    await end_upload(store, busy.uploads[0], batch_id=3)
    assert await Reporter(settings, store, FakeClient(), clock).report_ready() == 1
    assert await retry_command(settings, busy.file.id) == 1
    assert "is complete: every row was imported; nothing to retry" in capsys.readouterr().err
    dup = await store.add_file(name="d.csv", inbox_path="i", work_path="w", route=None,
                               size_bytes=1)
    await store.transition_file(dup.id, FileStatus.RECEIVED, FileStatus.DUPLICATE,
                                error="same bytes as file 1", reported_at=clock.now)
    assert await retry_command(settings, dup.id) == 1
    assert "duplicate" in capsys.readouterr().err
    again = await store.get_file(busy.file.id)
    assert again is not None and again.status is FileStatus.COMPLETE
    rowfail = await prepare_file(store, settings, "rows.csv", HEADER,
                                 [["r@x.com", "R"], ["", "S"]])
    await end_upload(store, rowfail.uploads[0], batch_id=8, failed=1)
    assert await Reporter(settings, store, FakeClient(), clock).report_ready() == 1
    partial = await store.get_file(rowfail.file.id)
    assert partial is not None and partial.status is FileStatus.PARTIAL
    assert await retry_command(settings, rowfail.file.id) == 1
    assert "has no failed uploads: nothing to retry" in capsys.readouterr().err


async def test_retry_says_so_when_the_prepared_upload_is_gone(
    store: Store, settings: Settings, clock, capsys: pytest.CaptureFixture[str]
) -> None:
    prep = await _partial_file(store, settings, clock)
    Path(prep.uploads[1].path).unlink()
    assert await retry_command(settings, prep.file.id) == 1
    assert "cannot re-send uploads [2]" in capsys.readouterr().err
    file = await store.get_file(prep.file.id)
    assert file is not None and file.status is FileStatus.PARTIAL
    assert (settings.paths.archive / f"{prep.file.id}-half.csv").is_file()


async def test_submit_force_never_replaces_a_waiting_forced_copy(
    settings: Settings, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "leads.csv"
    source.write_bytes(b"email\r\na@x.com\r\n")
    assert await submit_command(settings, source, None, force=True) == 0
    assert await submit_command(settings, source, None, force=True) == 0
    assert _inbox_files(settings) == ["leads-2.force.csv", "leads.force.csv"]
    assert "forced: imported even if" in capsys.readouterr().out


async def _rejected_from(store: Store, settings: Settings, clock, folder: str | None) -> int:
    """A file rejected with no route, found at the inbox root or in ``folder``."""
    where = settings.paths.inbox / folder if folder else settings.paths.inbox
    file = await store.add_file(name="r.csv", inbox_path=str(where / "r.csv"), work_path="w",
                                route=None, size_bytes=1)
    source = settings.paths.work / str(file.id) / "source" / "r.csv"
    source.parent.mkdir(parents=True)
    source.write_text("email\na@x.com\n")
    await store.transition_file(
        file.id, FileStatus.RECEIVED, FileStatus.REJECTED, error="rejected",
        info={"work_dir": str(source.parent.parent), "source_path": str(source)},
    )
    assert await Reporter(settings, store, FakeClient(), clock).report_ready() == 1
    return file.id


async def test_retry_route_flag_sends_the_file_to_that_route(
    store: Store, settings: Settings, clock, capsys: pytest.CaptureFixture[str]
) -> None:
    file_id = await _rejected_from(store, settings, clock, None)
    paths = [f"--set=paths.{k}={getattr(settings.paths, k)}"
             for k in ("inbox", "work", "archive", "rejected", "results", "database")]
    assert await cli(["retry", str(file_id), "--route", "nope", *paths]) == 2
    assert "unknown route 'nope' (known routes: none configured)" in capsys.readouterr().err
    assert await retry_command(settings, file_id, "events") == 0
    back = settings.paths.inbox / "events" / "r.csv"
    assert f"as {back} (route events)" in capsys.readouterr().out
    assert back.is_file()


async def test_retry_of_a_file_from_a_folder_that_is_still_no_route_says_so(
    store: Store, settings: Settings, clock, capsys: pytest.CaptureFixture[str]
) -> None:
    file_id = await _rejected_from(store, settings, clock, "typo")
    assert await retry_command(settings, file_id) == 2
    assert capsys.readouterr().err.strip() == (
        f"leadflow: file {file_id} was dropped in the inbox folder 'typo', which is not a route "
        "(known routes: events): add the route (and reload the daemon), or give --route NAME"
    )
    assert not (settings.paths.inbox / "r.csv").exists()  # not sent to the root either
    assert await retry_command(settings, file_id, "events") == 0


async def test_submit_of_a_name_starting_with_a_tilde(
    settings: Settings, tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """'~backup.csv' is a file name, not a home directory (it crashed with a traceback); '~$x'
    is an Office lock file, refused in one line; a missing route folder is created 2770."""
    monkeypatch.chdir(tmp_path)
    Path("~backup.csv").write_bytes(b"email\r\na@x.com\r\n")
    Path("~$lock.csv").write_bytes(b"email\r\n")
    events = settings.paths.inbox / "events"
    assert not events.exists()
    assert await submit_command(settings, Path("~backup.csv"), "events") == 0
    assert _inbox_files(settings) == ["events/~backup.csv"]
    assert events.stat().st_mode & 0o7777 == 0o2770
    assert await submit_command(settings, Path("~$lock.csv"), None) == 2
    assert "the daemon ignores files named like '~$lock.csv'" in capsys.readouterr().err
