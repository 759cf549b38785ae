from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from watchfiles import Change

from orchestrator.intake.watcher import (
    StabilityTracker,
    is_ignored_name,
    moved_in_paths,
    scan_inbox,
)
from orchestrator.settings import Settings


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        (".hidden.csv", True),
        ("leads.csv.tmp", True),
        ("leads.TMP", True),
        ("leads.csv.part", True),
        ("~$leads.xlsx", True),
        ("leads.csv", False),
        ("leads", False),
        ("my.tmp.csv", False),
    ],
)
def test_ignored_names(name: str, ignored: bool) -> None:
    assert is_ignored_name(name) is ignored


def test_taken_only_after_stable_for_stable_s() -> None:
    tracker = StabilityTracker(stable_s=5.0)
    assert not tracker.observe("a", 10, 1, now=100.0)
    assert tracker.next_due() == 105.0
    assert not tracker.observe("a", 10, 1, now=104.9)
    assert tracker.observe("a", 10, 1, now=105.0)


def test_growth_restarts_the_wait() -> None:
    tracker = StabilityTracker(stable_s=5.0)
    tracker.observe("a", 10, 1, now=100.0)
    assert not tracker.observe("a", 20, 2, now=104.0)  # grew
    assert not tracker.observe("a", 20, 2, now=108.0)
    assert tracker.observe("a", 20, 2, now=109.0)


def test_mtime_change_alone_restarts_the_wait() -> None:
    tracker = StabilityTracker(stable_s=5.0)
    tracker.observe("a", 10, 1, now=100.0)
    assert not tracker.observe("a", 10, 2, now=106.0)


def test_zero_stable_s_takes_at_first_sight() -> None:
    assert StabilityTracker(stable_s=0.0).observe("a", 0, 1, now=1.0)


def test_moved_in_is_taken_at_once_unless_empty_or_modified() -> None:
    tracker = StabilityTracker(stable_s=5.0)
    tracker.moved_in("a")
    assert tracker.observe("a", 10, 1, now=100.0)
    tracker.moved_in("b")
    assert not tracker.observe("b", 0, 1, now=100.0)  # empty: wait for stability
    tracker.moved_in("c")
    tracker.modified("c")
    assert not tracker.observe("c", 10, 1, now=100.0)


def test_moved_in_after_first_observation() -> None:
    tracker = StabilityTracker(stable_s=5.0)
    assert not tracker.observe("a", 10, 1, now=100.0)
    tracker.moved_in("a")
    assert tracker.observe("a", 10, 1, now=100.5)


def test_retain_forgets_files_that_left() -> None:
    tracker = StabilityTracker(stable_s=5.0)
    tracker.observe("a", 1, 1, now=0.0)
    tracker.observe("b", 1, 1, now=1.0)
    tracker.retain(["b"])
    assert tracker.next_due() == 6.0


def test_event_rule_old_mtime_means_moved_in() -> None:
    changes = {(Change.added, "/in/old.csv"), (Change.added, "/in/new.csv")}
    moved, modified = moved_in_paths(
        changes, {"/in/old.csv": 90.0, "/in/new.csv": 99.5}, now=100.0, stable_s=5.0
    )
    assert moved == {"/in/old.csv"}
    assert modified == set()


def test_event_rule_added_and_modified_is_being_written() -> None:
    changes = {(Change.added, "/in/a.csv"), (Change.modified, "/in/a.csv")}
    moved, modified = moved_in_paths(changes, {"/in/a.csv": 1.0}, now=100.0, stable_s=5.0)
    assert moved == set()
    assert modified == {"/in/a.csv"}


def test_event_rule_rename_from_temp_name_in_same_folder() -> None:
    changes = {(Change.deleted, "/in/.a.csv.tmp"), (Change.added, "/in/a.csv")}
    moved, _ = moved_in_paths(changes, {"/in/a.csv": 100.0}, now=100.0, stable_s=5.0)
    assert moved == {"/in/a.csv"}
    elsewhere = {(Change.deleted, "/other/.a.tmp"), (Change.added, "/in/a.csv")}
    assert moved_in_paths(elsewhere, {"/in/a.csv": 100.0}, now=100.0, stable_s=5.0)[0] == set()


def test_event_rule_vanished_file_is_not_moved_in() -> None:
    moved, _ = moved_in_paths({(Change.added, "/in/a.csv")}, {}, now=100.0, stable_s=0.0)
    assert moved == set()


def test_scan_inbox_routes_unknown_folders_and_ignored(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        routes=[{"name": "events", "list_id": 7}, {"name": "eu", "folder": "regions/eu"}]
    )
    inbox = settings.paths.inbox
    (inbox / "events" / "deeper").mkdir(parents=True)
    (inbox / "regions" / "eu").mkdir(parents=True)
    (inbox / "typo").mkdir()
    (inbox / ".git").mkdir()
    (inbox / "root.csv").write_text("email\n")
    (inbox / ".hidden.csv").write_text("email\n")
    (inbox / "up.csv.part").write_text("email\n")
    (inbox / "events" / "e.csv").write_text("email\n")
    (inbox / "events" / "deeper" / "d.csv").write_text("email\n")
    (inbox / "regions" / "eu" / "r.csv").write_text("email\n")
    (inbox / "typo" / "t.csv").write_text("email\n")
    (inbox / ".git" / "x.csv").write_text("email\n")
    outside = tmp_path / "outside.csv"
    outside.write_text("email\nsecret@example.com\n")
    (inbox / "link.csv").symlink_to(outside)
    (inbox / "events" / "link2.csv").symlink_to(outside)
    os.mkfifo(inbox / "pipe.csv")

    scan = scan_inbox(inbox, settings)

    found = {str(c.path.relative_to(inbox)): c for c in scan.candidates}
    assert sorted(found) == ["events/e.csv", "regions/eu/r.csv", "root.csv", "typo/t.csv"]
    assert found["root.csv"].route is None and found["root.csv"].route_error is None
    assert found["events/e.csv"].route is not None and found["events/e.csv"].route.list_id == 7
    assert found["regions/eu/r.csv"].route is not None
    assert found["regions/eu/r.csv"].route.name == "eu"
    assert found["typo/t.csv"].route_error == (
        "The inbox folder 'typo' is not a route (no [[routes]] entry has folder 'typo'); "
        "drop files at the inbox root or in a route folder."
    )
    ignored = {str(p.relative_to(inbox)): why for p, why in scan.ignored}
    assert ignored == {
        "link.csv": "symlink (not followed)",
        "events/link2.csv": "symlink (not followed)",
        "events/deeper": "folder nested in a route folder (not scanned)",
        "pipe.csv": "not a regular file",
    }


def test_symlinked_route_folder_is_not_followed(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(routes=[{"name": "events"}])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.csv").write_text("email\n")
    (settings.paths.inbox / "events").symlink_to(elsewhere, target_is_directory=True)
    scan = scan_inbox(settings.paths.inbox, settings)
    assert scan.candidates == []
    assert [why for _, why in scan.ignored] == ["route folder is a symlink (not followed)"]
