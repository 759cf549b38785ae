"""Where files live (orchestrator/places.py) and the one atomic move."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator import places
from orchestrator.errors import UnusablePath
from orchestrator.models import FileStatus
from orchestrator.settings import Settings, load_settings


def _exdev_for(prefix: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every rename out of ``prefix`` fail as across file systems."""
    real_rename = os.rename

    def rename(src: str | Path, dst: str | Path) -> None:
        if str(src).startswith(str(prefix)):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_rename(src, dst)

    monkeypatch.setattr(places.os, "rename", rename)


def test_move_renames_and_creates_the_folder(tmp_path: Path) -> None:
    source = tmp_path / "a" / "f.csv"
    source.parent.mkdir()
    source.write_bytes(b"x")
    dest = tmp_path / "b" / "c" / "f.csv"
    assert places.move(source, dest) is False
    assert dest.read_bytes() == b"x" and not source.exists()


def test_move_across_file_systems_copies_under_a_hidden_name_then_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, work = tmp_path / "inbox", tmp_path / "work"
    inbox.mkdir()
    source = inbox / "f.csv"
    source.write_bytes(b"rows")
    _exdev_for(inbox, monkeypatch)
    dest = work / "1" / "source" / "f.csv"
    assert places.move(source, dest) is True
    assert dest.read_bytes() == b"rows" and not source.exists()
    assert [p.name for p in dest.parent.iterdir()] == ["f.csv"]


def test_move_across_file_systems_keeps_the_source_when_the_copy_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = inbox / "f.csv"
    source.write_bytes(b"rows")
    _exdev_for(inbox, monkeypatch)

    def full(src: object, dst: Path, **_: object) -> None:
        Path(dst).write_bytes(b"ro")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(places.shutil, "copy2", full)
    dest = tmp_path / "archive" / "1-f.csv"
    with pytest.raises(OSError, match="No space"):
        places.move(source, dest)
    assert source.read_bytes() == b"rows"
    assert list(dest.parent.iterdir()) == []


def test_drop_into_never_replaces_a_file(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "f.csv").write_bytes(b"old")
    source = tmp_path / "f.csv"
    source.write_bytes(b"new")
    dest = places.drop_into(source, inbox, "f.csv", move=False)
    assert dest == inbox / "f-2.csv" and dest.read_bytes() == b"new"
    assert (inbox / "f.csv").read_bytes() == b"old" and source.exists()
    moved = places.drop_into(source, inbox, "f.csv", move=True)
    assert moved == inbox / "f-3.csv" and not source.exists()
    assert sorted(p.name for p in inbox.iterdir()) == ["f-2.csv", "f-3.csv", "f.csv"]


def test_every_place_of_a_file(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(routes=[{"name": "events", "folder": "events", "list_id": 7}])
    paths = settings.paths
    (route,) = settings.routes
    assert places.route_folder(paths.inbox, None) == paths.inbox
    assert places.route_folder(paths.inbox, route) == paths.inbox / "events"
    source = places.work_source(paths.work, 12, "a.csv")
    assert source == paths.work / "12" / "source" / "a.csv"
    assert places.work_dir_of_source(source) == paths.work / "12"
    assert places.results_dir(paths, "a.csv", 12) == paths.results / "a.csv.12"
    assert places.final_source(paths, "a.csv", 12, FileStatus.PARTIAL) == (
        paths.archive / "12-a.csv"
    )
    assert places.final_source(paths, "a.csv", 12, FileStatus.REJECTED) == (
        paths.rejected / "12-a.csv"
    )
    assert places.rejected_source(paths, "a.csv", 12) == paths.rejected / "12-a.csv"
    places.make_folders(settings)
    assert (paths.inbox / "events").is_dir() and paths.archive.is_dir()


def test_long_names_are_cut_to_a_safe_length() -> None:
    assert places.results_dir_name("a b.csv", 3) == "a b.csv.3"
    long = places.results_dir_name("é" * 300 + ".csv", 12)
    assert long.endswith(".12") and len(long.encode()) <= 190
    assert places.archive_name("x/y.csv", 4) == "4-x_y.csv"


def test_remove_work_dir_never_leaves_the_work_folder(tmp_path: Path) -> None:
    work = tmp_path / "work"
    inside = work / "3"
    inside.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    places.remove_work_dir(work, outside)
    places.remove_work_dir(work, work)
    assert outside.is_dir() and work.is_dir()
    places.remove_work_dir(work, inside)
    assert not inside.exists()


def _settings_under(root: Path, *, results: Path | None = None, **sections: object) -> Settings:
    """Settings whose folders are all under ``root`` (none created yet)."""
    paths = {key: str(root / key) for key in ("inbox", "work", "archive", "rejected", "results")}
    paths["database"] = str(root / "db" / "l.db")
    if results is not None:
        paths["results"] = str(results)
    return load_settings(None, {"paths": paths, **sections})


def test_make_folders_opens_new_drop_folders_to_the_group_whatever_the_umask(
    tmp_path: Path,
) -> None:
    """Issue 13.8: the inbox and route folders are 2770 when created; others follow the umask."""
    settings = _settings_under(tmp_path, routes=[{"name": "events"}])
    old = os.umask(0o027)
    try:
        assert places.make_folders(settings) == []
    finally:
        os.umask(old)
    paths = settings.paths
    for drop in (paths.inbox, paths.inbox / "events"):
        assert drop.stat().st_mode & 0o7777 == places.DROP_FOLDER_MODE
    assert paths.work.stat().st_mode & 0o7777 == 0o750
    assert paths.database.parent.is_dir()
    assert not [p for p in paths.inbox.iterdir() if p.name.startswith(places.PROBE_PREFIX)]


def test_make_folders_names_an_existing_drop_folder_closed_to_the_group(tmp_path: Path) -> None:
    settings = _settings_under(tmp_path)
    settings.paths.inbox.mkdir(mode=0o755)
    settings.paths.inbox.chmod(0o755)
    assert places.make_folders(settings) == [settings.paths.inbox]
    settings.paths.inbox.chmod(0o2770)
    assert places.make_folders(settings) == []


def test_make_folders_names_the_setting_of_a_folder_that_cannot_be(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be\n")
    settings = _settings_under(tmp_path, results=tmp_path / "blocker" / "results")
    with pytest.raises(UnusablePath) as caught:
        places.make_folders(settings)
    assert caught.value.key == "paths.results"
    assert caught.value.line() == (
        f"cannot use paths.results ({tmp_path / 'blocker' / 'results'}): "
        f"{tmp_path / 'blocker'} is not a folder (a file is in the way)"
    )
