"""The reporter against a real store and a fake client: reports, CSVs, moves, transitions."""

from __future__ import annotations

import json
from pathlib import Path

from results_helpers import FakeClient, end_upload, marketo_report, prepare_file, read_csv
from structlog.testing import capture_logs

from orchestrator.models import FileStatus, UploadStatus
from orchestrator.results import Reporter
from orchestrator.results.source_rows import FAILURE_REASON, WARNING_REASON
from orchestrator.settings import Settings
from orchestrator.store import Store

HEADER = ["email", "firstName", "lastName", "company"]
SOURCE_HEADER = ["E-mail Address", "First", "Last", "Company"]


def lead(n: int, **kw: str) -> list[str]:
    row = {"email": f"r{n}@example.com", "firstName": f"F{n}", "lastName": f"L{n}",
           "company": f"C{n}"}
    row.update(kw)
    return [row[c] for c in HEADER]


async def test_file_with_failures_warnings_and_local_rejections(
    store: Store, settings: Settings, clock
) -> None:
    rows = [lead(n) for n in range(1, 9)]
    rows[2] = lead(3, firstName="Bad, \"quoted\"")
    lines = [2, 3, 4, 6, 7, 8, 9, 11]  # lines 5 and 10 were rejected locally
    prep = await prepare_file(
        store, settings, "leads.csv", HEADER, rows, lines=lines, chunks=[4, 4],
        source_header=SOURCE_HEADER,
        rejections=[(10, ["x@example.com", "X", "Y", "Z", "extra"], "Invalid number of fields"),
                    (5, ["", "No", "Mail", ""], "Value for lookup field 'email' is empty")],
    )
    up1, up2 = prep.uploads
    client = FakeClient()
    # upload 1: rows 2 and 3 (lines 3 and 4) fail, row 4 (line 6) warns
    client.failures[501] = marketo_report(
        HEADER, [(rows[2], "Invalid data type in field Company"), (rows[1], "Reason B")],
        FAILURE_REASON,
    )
    client.warnings[501] = marketo_report(HEADER, [(rows[3], "Invalid email address")],
                                          WARNING_REASON)
    await end_upload(store, up1, batch_id=501, failed=2, warned=1)
    await end_upload(store, up2, batch_id=502)  # clean: no download may happen for it
    reporter = Reporter(settings, store, client, clock)

    with capture_logs() as logs:
        assert await reporter.report_ready() == 1

    assert sorted(client.calls) == [("failures", 501), ("warnings", 501)]
    final = await store.get_file(prep.file.id)
    assert final is not None
    assert final.status is FileStatus.PARTIAL  # some rows did not get in
    assert final.reported_at == clock.now and final.finished_at == clock.now
    folder = settings.paths.results / f"leads.csv.{prep.file.id}"
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    assert report["status"] == "partial"
    assert report["error"] == (
        "4 of 10 rows were not imported (2 failed at Marketo, 2 rejected before upload); "
        "see failures.csv"
    )
    assert report["rows"] == {"total": 10, "imported": 6, "failed": 2, "warned": 1,
                              "rejected": 2}
    assert [u["batchId"] for u in report["uploads"]] == [501, 502]
    assert report["file_id"] == prep.file.id and report["sha256"] == final.sha256
    failures = read_csv(folder / "failures.csv")
    assert failures[0] == ["sourceRow", *SOURCE_HEADER, "reason"]
    assert failures[1:] == [
        ["3", *rows[1], "Reason B"],
        ["4", *rows[2], "Invalid data type in field Company"],
        ["5", "", "No", "Mail", "", "Value for lookup field 'email' is empty"],
        ["10", "x@example.com", "X", "Y", "Z,extra", "Invalid number of fields"],
    ]
    assert read_csv(folder / "warnings.csv")[1:] == [["6", *rows[3], "Invalid email address"]]
    assert len(failures) - 1 == report["rows"]["failed"] + report["rows"]["rejected"]
    # the source is archived under a collision-free name; the work dir is gone
    archived = settings.paths.archive / f"{prep.file.id}-leads.csv"
    assert archived.read_bytes() == prep.source_bytes
    assert not prep.source.exists()
    assert not prep.work_dir.exists()
    assert final.info["archived_path"] == str(archived)
    assert sorted(p.name for p in settings.paths.results.iterdir()) == [folder.name]
    events = [e["event"] for e in logs]
    assert events.count("results_written") == 1 and events.count("file_finished") == 1
    done = next(e for e in logs if e["event"] == "file_finished")
    assert done["file_id"] == prep.file.id and done["status"] == "partial"
    assert done["rows"]["imported"] == 6 and done["uploads"] == 2
    history = [h[1] for h in await store.history("file", prep.file.id)]
    assert history == ["received", "queued", "reporting", "partial"]


async def test_empty_lookup_in_last_column_from_shared_inputs(
    store: Store, settings: Settings, clock, shared_inputs: Path
) -> None:
    source = (shared_inputs / "empty-lookup-in-last-column.csv").read_bytes().decode("utf-8")
    header, *rows = [r.split(",") for r in source.strip().split("\r\n")]
    prep = await prepare_file(store, settings, "empty-lookup-in-last-column.csv", header, rows,
                              source_text=source)
    client = FakeClient()
    client.failures[77] = marketo_report(
        header, [(rows[1], "Value for lookup field 'email' not found")], FAILURE_REASON
    )
    assert client.failures[77].startswith("firstName,lastName,phone,Import Failure Reason\r\n")
    await end_upload(store, prep.uploads[0], batch_id=77, failed=1)
    assert await Reporter(settings, store, client, clock).report_ready() == 1

    folder = settings.paths.results / f"empty-lookup-in-last-column.csv.{prep.file.id}"
    report = json.loads((folder / "report.json").read_text())
    assert report["rows"] == {"total": 3, "imported": 2, "failed": 1, "warned": 0, "rejected": 0}
    assert read_csv(folder / "failures.csv") == [
        ["sourceRow", "firstName", "lastName", "phone", "email", "reason"],
        ["3", "Bo", "Kim", "555-0102", "", "Value for lookup field 'email' not found"],
    ]
    assert not (folder / "warnings.csv").exists()


async def test_identical_rows_and_multiline_values_map_to_their_own_lines(
    store: Store, settings: Settings, clock
) -> None:
    twin = lead(1, email="")
    multi = lead(2, company="Suite 5\r\nBuilding B")
    rows = [twin, multi, lead(3), twin, lead(4)]
    lines = [2, 3, 5, 6, 7]  # the multi-line record spans lines 3-4
    prep = await prepare_file(store, settings, "twins.csv", HEADER, rows, lines=lines)
    client = FakeClient()
    reason = "Value for lookup field 'email' not found"
    client.failures[9] = marketo_report(
        HEADER, [(twin, reason), (multi, "Invalid data type in field Company"), (twin, reason)],
        FAILURE_REASON,
    )
    await end_upload(store, prep.uploads[0], batch_id=9, failed=3)
    assert await Reporter(settings, store, client, clock).report_ready() == 1
    failures = read_csv(settings.paths.results / f"twins.csv.{prep.file.id}" / "failures.csv")
    assert [r[0] for r in failures[1:]] == ["2", "3", "6"]
    assert failures[2][4] == "Suite 5\r\nBuilding B"


async def test_missing_failures_file_is_reported_not_invented(
    store: Store, settings: Settings, clock
) -> None:
    prep = await prepare_file(store, settings, "gone.csv", HEADER, [lead(1), lead(2)])
    client = FakeClient()  # knows no file: download answers False (HTTP 404)
    await end_upload(store, prep.uploads[0], batch_id=12, failed=1)
    with capture_logs() as logs:
        assert await Reporter(settings, store, client, clock).report_ready() == 1
    assert client.calls == [("failures", 12)]
    folder = settings.paths.results / f"gone.csv.{prep.file.id}"
    report = json.loads((folder / "report.json").read_text())
    assert report["status"] == "partial"
    assert report["rows"]["failed"] == 1
    assert not (folder / "failures.csv").exists()
    assert any(e["event"] == "results_file_missing" and e["batch_id"] == 12 for e in logs)


async def test_failed_upload_makes_the_file_partial_and_keeps_it_retryable(
    store: Store, settings: Settings, clock
) -> None:
    rows = [lead(n) for n in range(1, 7)]
    prep = await prepare_file(store, settings, "half.csv", HEADER, rows, chunks=[3, 3])
    await end_upload(store, prep.uploads[0], batch_id=41)
    await end_upload(store, prep.uploads[1], UploadStatus.FAILED, batch_id=42,
                     message="Import failed: disk on fire")
    client = FakeClient()
    assert await Reporter(settings, store, client, clock).report_ready() == 1
    assert client.calls == []
    final = await store.get_file(prep.file.id)
    assert final is not None and final.status is FileStatus.PARTIAL
    assert final.error is not None and f"leadflow retry {prep.file.id}" in final.error
    folder = settings.paths.results / f"half.csv.{prep.file.id}"
    report = json.loads((folder / "report.json").read_text())
    assert report["rows"] == {"total": 6, "imported": 3, "failed": 3, "warned": 0, "rejected": 0}
    assert report["uploads"][1]["status"] == "failed"
    failures = read_csv(folder / "failures.csv")
    assert [r[0] for r in failures[1:]] == ["5", "6", "7"]
    assert {r[-1] for r in failures[1:]} == {"upload 2 failed at Marketo: Import failed: disk on fire"}
    assert (settings.paths.archive / f"{prep.file.id}-half.csv").is_file()
    # the prepared uploads stay for `leadflow retry`
    assert Path(prep.uploads[1].path).is_file()


async def test_nothing_imported_means_rejected_and_source_in_rejected_folder(
    store: Store, settings: Settings, clock
) -> None:
    prep = await prepare_file(store, settings, "dead.csv", HEADER, [lead(1), lead(2)])
    await end_upload(store, prep.uploads[0], UploadStatus.REJECTED, error_code="1006",
                     error="Field 'company' not found")
    assert await Reporter(settings, store, FakeClient(), clock).report_ready() == 1
    final = await store.get_file(prep.file.id)
    assert final is not None and final.status is FileStatus.REJECTED
    assert final.error is not None and "1006 Field 'company' not found" in final.error
    assert (settings.paths.rejected / f"{prep.file.id}-dead.csv").is_file()
    failures = read_csv(settings.paths.results / f"dead.csv.{prep.file.id}" / "failures.csv")
    assert len(failures) == 3


async def test_every_row_rejected_locally_without_uploads(
    store: Store, settings: Settings, clock
) -> None:
    prep = await prepare_file(
        store, settings, "allbad.csv", HEADER, [],
        rejections=[(2, ["", "A", "B", "C"], "empty email"), (3, ["", "D", "E", "F"], "empty email")],
    )
    assert prep.file.status is FileStatus.REPORTING
    assert await Reporter(settings, store, FakeClient(), clock).report_ready() == 1
    final = await store.get_file(prep.file.id)
    assert final is not None and final.status is FileStatus.REJECTED
    report = json.loads((settings.paths.results / f"allbad.csv.{prep.file.id}" /
                         "report.json").read_text())
    assert report["rows"] == {"total": 2, "imported": 0, "failed": 0, "warned": 0, "rejected": 2}
    assert report["uploads"] == []


async def test_file_rejected_by_intake_only_gets_its_report(
    store: Store, settings: Settings, clock
) -> None:
    file = await store.add_file(name="bin.csv", inbox_path="x", work_path="y", route=None,
                                size_bytes=3)
    work = settings.paths.work / str(file.id) / "source"
    work.mkdir(parents=True)
    (work / "bin.csv").write_bytes(b"\x00\x01\x02")
    await store.transition_file(
        file.id, FileStatus.RECEIVED, FileStatus.REJECTED, error="not a text file",
        finished_at=clock.now - 5, work_path=str(work / "bin.csv"),
        info={"work_dir": str(work.parent), "source_path": str(work / "bin.csv")},
    )
    clock.now += 1
    assert await Reporter(settings, store, FakeClient(), clock).report_ready() == 1
    final = await store.get_file(file.id)
    assert final is not None and final.status is FileStatus.REJECTED
    assert final.reported_at == clock.now and final.finished_at == clock.now - 6
    report = json.loads((settings.paths.results / f"bin.csv.{file.id}" / "report.json").read_text())
    assert report["status"] == "rejected" and report["error"] == "not a text file"
    assert (settings.paths.rejected / f"{file.id}-bin.csv").read_bytes() == b"\x00\x01\x02"
    assert not work.parent.exists()
    # finished files are not reported twice
    assert await Reporter(settings, store, FakeClient(), clock).report_ready() == 0


async def test_queued_file_waits_for_every_upload(store: Store, settings: Settings, clock) -> None:
    prep = await prepare_file(store, settings, "wait.csv", HEADER, [lead(1), lead(2)],
                              chunks=[1, 1])
    await end_upload(store, prep.uploads[0], batch_id=3)
    reporter = Reporter(settings, store, FakeClient(), clock)
    assert await reporter.report_ready() == 0
    current = await store.get_file(prep.file.id)
    assert current is not None and current.status is FileStatus.QUEUED
    await end_upload(store, prep.uploads[1], batch_id=4)
    assert await reporter.report_ready() == 1
