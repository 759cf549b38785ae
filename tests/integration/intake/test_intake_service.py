"""Intake with a real Store and real files: claiming, routes, duplicates, recovery, describe."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog
from intake_support import Clock, FakeDescribe, uploads_of

from orchestrator import places
from orchestrator.intake import Intake
from orchestrator.intake import claim as claim_module
from orchestrator.models import FileStatus
from orchestrator.store import Store

GOOD = b"email,firstName\r\na@example.com,Ana\r\nb@example.com,Bo\r\n"


def drop(intake: Intake, name: str, data: bytes = GOOD) -> Path:
    path = intake.settings.paths.inbox / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def test_stable_file_is_taken_only_after_stable_s(
    make_intake: Callable[..., Intake], store: Store, clock: Clock
) -> None:
    intake = make_intake(intake={"stable_s": 5.0})
    path = drop(intake, "a.csv")
    assert await intake.scan_once() == 0
    clock.now += 4.0
    with path.open("ab") as out:  # still being written
        out.write(b"c@example.com,Cy\r\n")
    assert await intake.scan_once() == 0
    clock.now += 4.9
    assert await intake.scan_once() == 0
    clock.now += 0.1
    assert await intake.scan_once() == 1
    (record,) = await store.files_in(FileStatus.QUEUED)
    assert record.rows_total == 3
    assert record.work_path == str(intake.settings.paths.work / str(record.id) / "source" / "a.csv")
    assert not path.exists()


async def test_moved_in_file_is_taken_at_once(
    make_intake: Callable[..., Intake], store: Store, clock: Clock
) -> None:
    intake = make_intake(intake={"stable_s": 5.0})
    path = drop(intake, "a.csv")
    intake.tracker.moved_in(str(path))  # what the watch loop does on an `added` event
    assert await intake.scan_once() == 1
    assert len(await store.files_in(FileStatus.QUEUED)) == 1


async def test_logs_received_queued_and_prepared(
    make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake()
    drop(intake, "a.csv")
    with structlog.testing.capture_logs() as logs:
        assert await intake.scan_once() == 1
    (record,) = await store.files_in(FileStatus.QUEUED)
    (upload,) = await store.parts_of_file(record.id)
    events = {e["event"]: e for e in logs}
    assert events["file_received"]["file_id"] == record.id
    assert events["file_received"]["file"] == "a.csv"
    queued = events["part_queued"]
    assert (queued["file_id"], queued["part_id"], queued["seq"], queued["rows"], queued["bytes"]) == (
        record.id, upload.id, 1, 2, upload.size_bytes
    )
    assert events["file_prepared"]["encoding"] == "utf-8"


async def test_routes_give_their_options_and_unknown_folders_are_left_alone(
    make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake(
        routes=[
            {"name": "events", "list_id": 1001, "partition_name": "EU", "lookup_field": "email"},
            {"name": "webinar", "kind": "program_members", "program_id": 77,
             "program_member_status": "Registered"},
        ],
        **{"import": {"list_id": 5}},
    )
    drop(intake, "root.csv", GOOD)
    drop(intake, "events/e.csv", GOOD + b"c@example.com,Cy\r\n")
    drop(intake, "webinar/w.csv", GOOD + b"d@example.com,Di\r\n")
    drop(intake, "typo/t.csv", GOOD + b"e@example.com,Ed\r\n")
    assert await intake.scan_once() == 3
    by_name = {f.name: f for f in await store.files_in(FileStatus.QUEUED)}
    assert sorted(by_name) == ["e.csv", "root.csv", "w.csv"]
    options = {
        name: (u.kind, u.options)
        for name, f in by_name.items()
        for u in await store.parts_of_file(f.id)
    }
    assert options == {
        "root.csv": ("leads", {"format": "csv", "lookupField": "email", "listId": 5}),
        "e.csv": ("leads", {"format": "csv", "lookupField": "email", "listId": 1001,
                            "partitionName": "EU"}),
        "w.csv": ("program_members", {"format": "csv", "programId": 77,
                                      "programMemberStatus": "Registered"}),
    }
    assert by_name["e.csv"].route == "events" and by_name["root.csv"].route is None
    assert await store.files_in(FileStatus.REJECTED) == []
    assert (intake.settings.paths.inbox / "typo" / "t.csv").exists()


async def test_same_content_as_an_imported_file_is_a_duplicate(
    make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake()
    drop(intake, "first.csv")
    assert await intake.scan_once() == 1
    (first,) = await store.files_in(FileStatus.QUEUED)
    drop(intake, "again.csv")
    assert await intake.scan_once() == 1
    (again,) = await store.files_in(FileStatus.DUPLICATE)
    assert again.error == (
        f"Same content (SHA-256) and import options as file {first.id} 'first.csv', which is "
        "already imported or being imported; not sent again. To import it again on purpose, "
        "drop it as 'again.force.csv' or use `leadflow submit --force`."
    )
    assert again.sha256 == first.sha256
    assert await store.parts_of_file(again.id) == []
    assert (await store.waiting_summary())["parts"] == 1


async def test_twins_in_one_batch_are_enqueued_once(
    make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake()
    drop(intake, "a.csv")
    drop(intake, "b.csv")  # same bytes, same scan: the batch finds its own twin
    drop(intake, "c.csv", GOOD + b"c@example.com,Cy\r\n")
    assert await intake.scan_once() == 3
    queued = {f.name: f for f in await store.files_in(FileStatus.QUEUED)}
    (twin,) = await store.files_in(FileStatus.DUPLICATE)
    assert sorted(queued) == ["a.csv", "c.csv"] and twin.name == "b.csv"
    assert twin.error is not None and f"file {queued['a.csv'].id} 'a.csv'" in twin.error
    assert not [p for p in Path(twin.work_path).parent.parent.iterdir() if p.name != "source"]
    assert (await store.waiting_summary())["parts"] == 2


async def test_all_rows_rejected_goes_to_reporting(
    make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake()
    drop(intake, "bad.csv", b"email,leadScore\r\na@example.com,high\r\n,3\r\n")
    assert await intake.scan_once() == 1
    (record,) = await store.files_in(FileStatus.REPORTING)
    assert (record.rows_total, record.rows_rejected) == (2, 2)
    assert await store.parts_of_file(record.id) == []
    assert Path(record.info["rejections_path"]).read_bytes() == (
        b"sourceRow,email,leadScore,Import Failure Reason\r\n"
        b"2,a@example.com,high,Invalid data type in field Lead Score\r\n"
        b"3,,3,Value for lookup field 'email' not found\r\n"
    )


async def test_info_holds_the_design_keys(make_intake: Callable[..., Intake], store: Store) -> None:
    intake = make_intake()
    drop(intake, "d.csv", b"Email Address;First Name\r\na@x.com;A\r\nA@X.com;B\r\n")
    assert await intake.scan_once() == 1
    (record,) = await store.files_in(FileStatus.QUEUED)
    info = record.info
    assert info["header"] == ["email", "firstName"]
    assert info["source_header"] == ["Email Address", "First Name"]
    assert (info["delimiter"], info["format"], info["lookup_field"]) == (";", "ssv", "email")
    assert info["duplicates"] == [{"value": "a@x.com", "rows": [2, 3], "count": 2}]
    assert record.duplicates == 1
    assert info["work_dir"] == str(Path(record.work_path).parent.parent)
    assert info["source_path"] == record.work_path
    assert info["rejections_path"] is None
    assert info["route"] == {"name": None, "kind": "leads", "format": "csv", "lookupField": "email"}
    assert await uploads_of(store, record) == [
        (b"email,firstName\r\na@x.com,A\r\nA@X.com,B\r\n", [2, 3])
    ]


async def test_unreadable_or_crashing_file_is_rejected_and_the_scan_goes_on(
    make_intake: Callable[..., Intake], store: Store, monkeypatch: object
) -> None:
    intake = make_intake()
    drop(intake, "a.csv", b"email\r\na@x.com\r\n")
    drop(intake, "b.csv", b"email\r\nb@x.com\r\n")
    real = claim_module.prepare_file
    calls: list[str] = []

    def flaky(source: Path, *args: object) -> object:
        calls.append(source.name)
        if source.name == "a.csv":
            raise RuntimeError("boom")
        return real(source, *args)  # type: ignore[arg-type]

    claim_module.prepare_file = flaky
    try:
        assert await intake.scan_once() == 2
    finally:
        claim_module.prepare_file = real
    (bad,) = await store.files_in(FileStatus.REJECTED)
    assert bad.name == "a.csv"
    assert bad.error == "Preparation failed: RuntimeError: boom."
    assert [f.name for f in await store.files_in(FileStatus.QUEUED)] == ["b.csv"]


async def test_describe_cached_refreshed_and_files_wait_when_unavailable(
    make_intake: Callable[..., Intake], store: Store, describe: FakeDescribe, clock: Clock
) -> None:
    intake = make_intake(intake={"describe_refresh_s": 100.0})
    describe.fail = True
    drop(intake, "a.csv")
    assert await intake.scan_once() == 1
    (waiting,) = await store.files_in(FileStatus.RECEIVED)
    assert Path(waiting.work_path).is_file()
    describe.fail = False
    assert await intake.scan_once() == 0  # no new describe call right after a failure
    assert describe.calls == 1 and len(await store.files_in(FileStatus.RECEIVED)) == 1
    clock.now += 1.0  # past intake.rescan_interval_s
    assert await intake.scan_once() == 0  # the waiting file is retried
    assert [f.name for f in await store.files_in(FileStatus.QUEUED)] == ["a.csv"]
    drop(intake, "b.csv", GOOD + b"x@x.com,X\r\n")
    assert await intake.scan_once() == 1
    assert describe.calls == 2  # one failure, then cached
    clock.now += 100.0
    describe.fail = True  # a failed refresh keeps the stale catalogue
    drop(intake, "c.csv", GOOD + b"y@x.com,Y\r\n")
    assert await intake.scan_once() == 1
    assert describe.calls == 3
    assert len(await store.files_in(FileStatus.QUEUED)) == 3


async def test_symlink_out_of_the_inbox_is_ignored_and_logged_once(
    make_intake: Callable[..., Intake], store: Store, tmp_path: Path
) -> None:
    intake = make_intake()
    secret = tmp_path / "secret.csv"
    secret.write_bytes(b"email\r\nsecret@x.com\r\n")
    (intake.settings.paths.inbox / "link.csv").symlink_to(secret)
    with structlog.testing.capture_logs() as logs:
        assert await intake.scan_once() == 0
        assert await intake.scan_once() == 0
    ignored = [e for e in logs if e["event"] == "inbox_entry_ignored"]
    assert [(e["path"], e["reason"]) for e in ignored] == [
        (str(intake.settings.paths.inbox / "link.csv"), "symlink (not followed)")
    ]
    assert secret.exists() and (await store.counts_by_status())["files"]["received"] == 0


async def test_ignored_names_stay_in_the_inbox(
    make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake()
    for name in [".x.csv", "y.csv.tmp", "z.part", "~$w.csv"]:
        drop(intake, name)
    assert await intake.scan_once() == 0
    assert sorted(os.listdir(intake.settings.paths.inbox)) == [".x.csv", "y.csv.tmp", "z.part", "~$w.csv"]


async def test_recover_resumes_received_files(
    make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake()
    work = intake.settings.paths.work
    inbox = intake.settings.paths.inbox
    # 1: claimed into work, not prepared (stale outputs from the crash are cleaned)
    one = await store.add_file(name="one.csv", inbox_path=str(inbox / "one.csv"),
                               work_path=str(work / "1" / "source" / "one.csv"), route=None,
                               size_bytes=None)
    (work / "1" / "source").mkdir(parents=True)
    (work / "1" / "source" / "one.csv").write_bytes(GOOD)
    (work / "1" / "upload-0001.csv").write_bytes(b"stale")
    (work / "1" / "upload-0009.csv").write_bytes(b"stale")
    # 2: recorded but never moved out of the inbox
    two = await store.add_file(name="two.csv", inbox_path=str(inbox / "two.csv"), work_path="",
                               route=None, size_bytes=None)
    (inbox / "two.csv").write_bytes(GOOD + b"c@x.com,C\r\n")
    # 3: gone from both places
    three = await store.add_file(name="three.csv", inbox_path=str(inbox / "three.csv"),
                                 work_path="", route=None, size_bytes=None)
    # 4: from a folder that is no route, claimed just before a crash
    four = await store.add_file(name="four.csv", inbox_path=str(inbox / "typo" / "four.csv"),
                                work_path=str(work / "4" / "source" / "four.csv"), route=None,
                                size_bytes=None)
    (work / "4" / "source").mkdir(parents=True)
    (work / "4" / "source" / "four.csv").write_bytes(GOOD)
    assert await intake.recover() == 4
    unrouted = await store.get_file(four.id)
    assert unrouted is not None and unrouted.status is FileStatus.REJECTED
    assert unrouted.error is not None and unrouted.error.startswith("The inbox folder 'typo'")
    assert (await store.get_file(one.id)).status is FileStatus.QUEUED  # type: ignore[union-attr]
    assert not (work / "1" / "upload-0009.csv").exists()
    assert (work / "1" / "upload-0001.csv").read_bytes().startswith(b"email,firstName\r\n")
    moved = await store.get_file(two.id)
    assert moved is not None and moved.status is FileStatus.QUEUED
    assert moved.work_path == str(work / str(two.id) / "source" / "two.csv")
    assert not (inbox / "two.csv").exists()
    gone = await store.get_file(three.id)
    assert gone is not None and gone.status is FileStatus.REJECTED
    assert gone.error == (
        "The file vanished before it was prepared: it is neither in the inbox nor in the work "
        "folder."
    )


async def test_a_cluster_node_resumes_only_the_files_it_claimed(
    make_intake: Callable[..., Intake], store: Store, describe: FakeDescribe, clock: Clock
) -> None:
    """Found by the two-instance cluster test (issue 17): a node starting while another
    prepared files took them for its own leftovers, cleaned their work folders under the
    other node and left their uploads unreadable."""
    a, b = make_intake(), make_intake()
    a.node_id, b.node_id = "node-a", "node-b"
    for node in (a.node_id, b.node_id):  # both alive (a dead node's files are adopted)
        await store.heartbeat(node, "host", 1)
    describe.fail = True  # node-a claims the file; it waits ``received`` in work
    drop(a, "a.csv")
    assert await a.scan_once() == 1
    (record,) = await store.files_in(FileStatus.RECEIVED)
    work = Path(record.work_path).parent.parent
    (work / "upload-0001.csv").write_bytes(b"node-a is writing this")
    describe.fail = False
    assert await b.recover() == 0  # node-b starts: not its file
    assert (work / "upload-0001.csv").read_bytes() == b"node-a is writing this"
    assert (await store.get_file(record.id)).status is FileStatus.RECEIVED  # type: ignore[union-attr]
    clock.now += 60  # past node-a's retry of the failed describe
    restarted = make_intake()  # node-a restarted (same node_id): its own file
    restarted.node_id = "node-a"
    assert await restarted.recover() == 1
    assert (await store.get_file(record.id)).status is FileStatus.QUEUED  # type: ignore[union-attr]


async def test_thousand_small_files_dropped_at_once(
    make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake()
    inbox = intake.settings.paths.inbox
    for i in range(1000):
        (inbox / f"f{i:04d}.csv").write_bytes(f"email,firstName\r\nu{i}@x.com,N{i}\r\n".encode())
    assert await intake.scan_once() == 1000
    queued = await store.files_in(FileStatus.QUEUED)
    assert len(queued) == 1000
    assert sorted(f.name for f in queued) == [f"f{i:04d}.csv" for i in range(1000)]
    assert os.listdir(inbox) == []
    waiting = await store.waiting_summary()
    assert (waiting["files"], waiting["parts"], waiting["rows"]) == (1000, 1000, 1000)
    # One pack key for all: the same options and the same columns.
    keys = {p.pack_key for f in queued for p in await store.parts_of_file(f.id)}
    assert len(keys) == 1 and None not in keys


async def test_file_vanishing_while_prepared_is_rejected(
    make_intake: Callable[..., Intake], store: Store, describe: FakeDescribe
) -> None:
    intake = make_intake()
    describe.fail = True  # claim it, but leave it waiting in `received`
    drop(intake, "a.csv")
    assert await intake.scan_once() == 1
    (record,) = await store.files_in(FileStatus.RECEIVED)
    Path(record.work_path).unlink()
    describe.fail = False
    await intake.recover()  # work copy gone, inbox copy gone
    gone = await store.get_file(record.id)
    assert gone is not None and gone.status is FileStatus.REJECTED
    assert gone.error == (
        "The file vanished before it was prepared: it is neither in the inbox nor in the work "
        "folder."
    )


async def test_unreadable_while_prepared_is_held_and_retried_not_rejected(
    make_intake: Callable[..., Intake], store: Store, clock: Clock,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13.5: the file is there but cannot be read (a permission, a disk): not its fault."""
    real = claim_module.scan_source
    failing = [True]

    def unreadable(path: Path, *args: object) -> object:
        if failing[0]:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(claim_module, "scan_source", unreadable)
    intake = make_intake(intake={"rescan_interval_s": 2.0, "environment_retry_max_s": 5.0})
    drop(intake, "a.csv")
    with structlog.testing.capture_logs() as logs:
        assert await intake.scan_once() == 1
        (record,) = await store.files_in(FileStatus.RECEIVED)
        assert Path(record.work_path).is_file()  # claimed into work, held there
        clock.now += 1.9
        await intake.scan_once()  # not due yet
        clock.now += 0.1
        await intake.scan_once()  # second failure: the next wait doubles
        failing[0] = False
        clock.now += 3.9
        await intake.scan_once()
        assert await store.files_in(FileStatus.QUEUED) == []
        clock.now += 0.1
        await intake.scan_once()
    (queued,) = await store.files_in(FileStatus.QUEUED)
    assert queued.id == record.id and queued.rows_total == 2
    failed = [e for e in logs if e["event"] == "file_prepare_failed"]
    assert [(e["log_level"], e["failures"], e["retry_in_s"]) for e in failed] == [
        ("error", 1, 2.0), ("error", 2, 4.0)
    ]
    assert not [e for e in logs if e["event"] == "file_rejected"]
    assert await store.files_in(FileStatus.REJECTED) == []


async def test_claim_across_file_systems_copies_then_removes(
    make_intake: Callable[..., Intake], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_rename = os.rename
    inbox_calls: list[str] = []

    def rename(src: str | Path, dst: str | Path) -> None:
        if str(src).startswith(str(intake.settings.paths.inbox)):
            inbox_calls.append(str(src))
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_rename(src, dst)

    intake = make_intake()
    monkeypatch.setattr(places.os, "rename", rename)
    path = drop(intake, "a.csv")
    with structlog.testing.capture_logs() as logs:
        assert await intake.scan_once() == 1
    (record,) = await store.files_in(FileStatus.QUEUED)
    assert [e["target"] for e in logs if e["event"] == "file_claimed_by_copy"] == [
        record.work_path
    ]
    assert inbox_calls == [str(path)]
    assert not path.exists()
    assert Path(record.work_path).read_bytes() == GOOD
    assert [p.name for p in Path(record.work_path).parent.iterdir()] == ["a.csv"]


async def test_unmovable_file_is_held_in_the_inbox_and_retried_with_backoff(
    make_intake: Callable[..., Intake], store: Store, clock: Clock,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13.5: a claim that fails while the file is there is the folder's fault."""
    real_rename = os.rename
    refusing = [True]

    def refuse(src: str | Path, dst: str | Path) -> None:
        if refusing[0]:
            raise PermissionError(1, "Operation not permitted", str(src))
        real_rename(src, dst)

    monkeypatch.setattr(places.os, "rename", refuse)
    intake = make_intake(intake={"rescan_interval_s": 1.0, "environment_retry_max_s": 3.0})
    path = drop(intake, "locked.csv")
    with structlog.testing.capture_logs() as logs:
        assert await intake.scan_once() == 1
        for _ in range(3):  # due after 1, 2, then 3 (the cap) seconds
            assert await intake.scan_once() == 0  # not due: no new record either
            clock.now += 3.0
            await intake.scan_once()
        (record,) = await store.files_in(FileStatus.RECEIVED)
        assert path.exists() and intake.holding() == 1
        refusing[0] = False
        clock.now += 3.0
        assert await intake.scan_once() == 0  # a retry, not a new file
    (queued,) = await store.files_in(FileStatus.QUEUED)
    assert queued.id == record.id and not path.exists() and intake.holding() == 0
    failed = [e for e in logs if e["event"] == "file_claim_failed"]
    assert [e["retry_in_s"] for e in failed] == [1.0, 2.0, 3.0, 3.0]
    assert {e["log_level"] for e in failed} == {"error"}
    assert await store.files_in(FileStatus.REJECTED) == []


async def test_inbox_folder_that_is_no_route_is_left_alone_and_logged_once(
    make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake(routes=[{"name": "events"}, {"name": "webinar", "list_id": 1001}])
    typo = drop(intake, "typo/t.csv")
    other = drop(intake, "archive-2024/old.csv", GOOD + b"z@example.com,Zo\r\n")
    drop(intake, "events/e.csv", GOOD + b"c@example.com,Cy\r\n")
    with structlog.testing.capture_logs() as logs:
        assert await intake.scan_once() == 1
        assert await intake.scan_once() == 0
        assert await intake.scan_once() == 0
    assert typo.read_bytes() == GOOD and other.exists()  # not taken, not moved
    counts = await store.counts_by_status()
    assert sum(counts["files"].values()) == 1  # only events/e.csv was recorded
    ignored = [e for e in logs if e["event"] == "inbox_folder_ignored"]
    assert [(e["folder"], e["log_level"]) for e in ignored] == [
        ("archive-2024", "warning"), ("typo", "warning")
    ]
    assert all(e["routes"] == ["events", "webinar"] for e in ignored)
    assert all(e["route_folders"] == ["events", "webinar"] for e in ignored)
    assert not [e for e in logs if e["event"] == "file_rejected"]


async def test_second_part_of_a_stalled_copy_says_it_was_taken_while_written(
    make_intake: Callable[..., Intake], store: Store, clock: Clock
) -> None:
    """A copy pauses longer than stable_s: the first part is taken; the copier then writes the
    rest under the same name (as a resuming transfer does), so that file's header is a row."""
    intake = make_intake(intake={"stable_s": 5.0})
    rows = [f"stall{n}@example.com,Stall,No{n}\r\n".encode() for n in range(1, 11)]
    path = drop(intake, "stall.csv", b"email,firstName,lastName\r\n" + b"".join(rows[:5]))
    assert await intake.scan_once() == 0
    clock.now += 5.0
    assert await intake.scan_once() == 1  # the first part, taken during the pause
    path.write_bytes(b"".join(rows[5:]))  # the copy goes on
    assert await intake.scan_once() == 0
    clock.now += 5.0
    assert await intake.scan_once() == 1
    (second,) = await store.files_in(FileStatus.REJECTED)
    assert second.error is not None
    assert second.error.startswith(
        "The header looks like data ('stall6@example.com'): the file was probably taken while "
        "it was still being written (a copy that paused for longer than intake.stable_s = 5 s)"
    )
    assert "write it under a temporary name" in second.error
    assert "or raise intake.stable_s" in second.error
    assert "Unknown columns 'stall6@example.com'" in second.error  # the original reason too


async def test_a_header_that_is_merely_unknown_gets_no_stall_hint(
    make_intake: Callable[..., Intake], store: Store
) -> None:
    intake = make_intake()
    drop(intake, "typo.csv", b"emial,firstName\r\na@example.com,Ana\r\n")
    assert await intake.scan_once() == 1
    (rejected,) = await store.files_in(FileStatus.REJECTED)
    assert rejected.error is not None and rejected.error.startswith("Unknown column 'emial'")
    assert "still being written" not in rejected.error
