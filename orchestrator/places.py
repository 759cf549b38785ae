"""Every place a file lives on disk, and the one atomic move between places.

A dropped file's life, in folders (``paths.*`` settings)::

    inbox/<name>                      dropped by an operator (or ``leadflow submit``)
    inbox/<route folder>/<name>       dropped for a route (``[[routes]] folder``)
    work/<file id>/source/<name>      claimed by intake (one atomic move out of the inbox)
    work/<file id>/                   its parts (upload-NNNN.csv), rejections.csv, split rows
    work/packs/                       pack files (one upload shared by several files) and
                                      Marketo's failures/warnings files of their batches
    results/<name>.<file id>/         report.json, failures.csv, warnings.csv
    archive/<file id>-<name>          the source of a complete or partial file
    rejected/<file id>-<name>         the source of a file with no row imported

Every path above is built here, every folder is created here (``make_folders``: the drop
folders ``2770``, each checked writable), and every move between them is ``move`` (the one
that never leaves a half-copied file behind, even across file systems) or ``drop_into``
(into the inbox under a free name, never replacing a file). Reading and writing the files
themselves belongs to intake and results.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrator.errors import UnusablePath
from orchestrator.models import FILE_ARCHIVED, FileRecord, FileStatus
from orchestrator.settings import PathSettings, Route, Settings

#: Longest file-name part (bytes, UTF-8) kept in results folder and archive names.
MAX_NAME_BYTES = 180
#: The folder of a file's work folder that holds the claimed source.
SOURCE_FOLDER = "source"
#: The folder of ``work`` that holds pack files (uploads shared by several files).
PACKS_FOLDER = "packs"
#: Intake's rows rejected locally, in the file's work folder.
REJECTIONS_NAME = "rejections.csv"
#: Stands for the file id in a work path recorded before the id is known (``Store.add_file``
#: replaces it in the same transaction).
PENDING_ID = "{id}"
#: Mode of the inbox and of every route folder: the owner and the group may drop files, the
#: setgid bit gives every dropped file the folder's group, others get nothing. Set with
#: ``chmod`` after creating the folder, so the umask (the systemd unit's ``UMask=0027``)
#: cannot narrow it.
DROP_FOLDER_MODE = 0o2770
#: Prefix of the file written and removed to check that a folder can be written (a leading
#: ``.``: the inbox watcher ignores it).
PROBE_PREFIX = ".leadflow-probe-"


# --- the inbox ---------------------------------------------------------------------------


def route_folder(inbox: Path, route: Route | None) -> Path:
    """Return the folder a route's files are dropped in (the inbox root for None)."""
    return inbox if route is None else inbox / route.subfolder


def make_folders(settings: Settings) -> list[Path]:
    """Create every folder if missing, and check that each can be written.

    The folders: ``paths.*``, each route's inbox folder, the database's folder. The inbox
    and the route folders are made ``DROP_FOLDER_MODE`` (``drwxrws---``) when they are
    created, whatever the umask, so members of the daemon's group can drop files; the other
    folders follow the umask. An existing folder's mode is left alone.

    Returns:
        The drop folders (inbox, route folders) that already existed and are not
        writable by their group (the daemon logs them: droppers cannot write there).

    Raises:
        UnusablePath: a folder cannot be created (a file in the way, no permission,
            read-only file system) or written; it names the setting.
    """
    paths = settings.paths
    narrow: list[Path] = []
    for folder in [paths.inbox, *(route_folder(paths.inbox, r) for r in settings.routes)]:
        created = _make_folder("paths.inbox", folder, folder, DROP_FOLDER_MODE)
        if not created and folder.stat().st_mode & 0o030 != 0o030:
            narrow.append(folder)
    for key in ("work", "archive", "rejected", "results"):
        folder = getattr(paths, key)
        _make_folder(f"paths.{key}", folder, folder, None)
    _make_folder("paths.database", paths.database.parent, paths.database, None)
    for key, folder, shown in (
        ("paths.inbox", paths.inbox, paths.inbox),
        ("paths.work", paths.work, paths.work),
        ("paths.archive", paths.archive, paths.archive),
        ("paths.rejected", paths.rejected, paths.rejected),
        ("paths.results", paths.results, paths.results),
        ("paths.database", paths.database.parent, paths.database),
    ):
        _probe(key, folder, shown)
    return narrow


def _in_the_way(folder: Path) -> str:
    """Say which part of ``folder`` exists but is not a folder."""
    for part in (folder, *folder.parents):
        if part.is_dir():
            break
        if part.exists() or part.is_symlink():
            return f"{part} is not a folder (a file is in the way)"
    return "not a folder"


def _make_folder(key: str, folder: Path, shown: Path, mode: int | None) -> bool:
    """Create ``folder`` (and its parents); set ``mode`` on it if created. Return if created.

    Raises:
        UnusablePath: naming ``key`` and ``shown`` (the setting's value).
    """
    if folder.is_dir():
        return False
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        if folder.is_dir():  # made meanwhile by someone else
            return False
        raise UnusablePath(key, str(shown), _in_the_way(folder)) from None
    except NotADirectoryError:
        raise UnusablePath(key, str(shown), _in_the_way(folder)) from None
    except OSError as exc:
        raise UnusablePath(
            key, str(shown), f"cannot create {folder}: {exc.strerror or exc}"
        ) from None
    if mode is not None:
        try:
            os.chmod(folder, mode)
        except OSError as exc:
            raise UnusablePath(
                key, str(shown), f"cannot set the mode of {folder}: {exc.strerror or exc}"
            ) from None
    return True


def _probe(key: str, folder: Path, shown: Path) -> None:
    """Write and remove a hidden file in ``folder``.

    Raises:
        UnusablePath: the folder cannot be written (read-only, no permission, full).
    """
    try:
        fd, name = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise UnusablePath(
            key, str(shown), f"cannot write in {folder}: {exc.strerror or exc}"
        ) from None


# --- the work folder ---------------------------------------------------------------------


def work_source(work: Path, file_id: int | str, name: str) -> Path:
    """Return ``work/<file id>/source/<name>``, where intake claims a file."""
    return work / str(file_id) / SOURCE_FOLDER / name


def moved_marker(database: Path) -> Path:
    """Return ``<database>.moved``, the mark of a database copied into PostgreSQL.

    ``leadflow migrate --copy-from`` writes it; ``leadflow run`` refuses a database with one.
    """
    return database.with_name(database.name + ".moved")


def packs_dir(paths: PathSettings, instance: str = "default") -> Path:
    """Return ``work/packs``: pack files and the Marketo files fetched for their batches.

    Args:
        instance: the Marketo instance; one other than ``default`` has its own subfolder
            ``work/packs/<instance>``, so that recovering one instance (at a node's start or
            when it takes the instance's lease) never removes a pack another instance's
            scheduler has just written.
    """
    folder = paths.work / PACKS_FOLDER
    return folder if instance == "default" else folder / instance


def work_dir_of_source(source: Path) -> Path:
    """Return a file's work folder from its claimed source path (``work_source``)."""
    return source.parent.parent


def work_dir(paths: PathSettings, file: FileRecord) -> Path:
    """Return a file's work folder (``files.info.work_dir``, else ``work/<file id>``)."""
    return Path(file.info.get("work_dir") or paths.work / str(file.id))


def source_path(file: FileRecord) -> Path:
    """Return where a file's source is while it is worked on (``files.info.source_path``)."""
    return Path(file.info.get("source_path") or file.work_path)


def rejections_path(paths: PathSettings, file: FileRecord) -> Path:
    """Return intake's ``rejections.csv`` of a file (it may not exist)."""
    return Path(file.info.get("rejections_path") or work_dir(paths, file) / REJECTIONS_NAME)


def work_dirs(work: Path) -> list[tuple[int, Path]]:
    """Return ``(file id, folder)`` of every ``work/<file id>`` folder, by file id.

    Raises:
        OSError: ``work`` cannot be listed.
    """
    found = [
        (int(entry.name), work / entry.name)
        for entry in os.scandir(work)
        if entry.name.isdigit() and entry.is_dir(follow_symlinks=False)
    ]
    return sorted(found)


def remove_work_dir(work: Path, folder: Path) -> None:
    """Delete a file's work folder; never ``work`` itself or anything outside it."""
    folder = folder.resolve()
    root = work.resolve()
    if folder != root and root in folder.parents and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


# --- results, archive, rejected ----------------------------------------------------------


def _cut(name: str) -> str:
    safe = name.replace("/", "_").replace("\x00", "_") or "file"
    while len(safe.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        safe = safe[:-1]
    return safe


def results_dir_name(name: str, file_id: int) -> str:
    """Return the results folder name ``<file name>.<file id>`` (long names are cut)."""
    return f"{_cut(name)}.{file_id}"


def results_dir(paths: PathSettings, name: str, file_id: int) -> Path:
    """Return ``results/<file name>.<file id>``."""
    return paths.results / results_dir_name(name, file_id)


def archive_name(name: str, file_id: int) -> str:
    """Return the collision-free name of a source in archive/rejected: ``<id>-<name>``."""
    return f"{file_id}-{_cut(name)}"


def rejected_source(paths: PathSettings, name: str, file_id: int) -> Path:
    """Return ``rejected/<file id>-<name>``."""
    return paths.rejected / archive_name(name, file_id)


def final_source(paths: PathSettings, name: str, file_id: int, status: FileStatus) -> Path:
    """Return where a reported file's source goes: archive (complete, partial) or rejected."""
    folder = paths.archive if status in FILE_ARCHIVED else paths.rejected
    return folder / archive_name(name, file_id)


# --- moving ------------------------------------------------------------------------------


def move(source: Path, dest: Path) -> bool:
    """Move ``source`` to ``dest`` atomically, creating ``dest``'s folder.

    A rename where both are on one file system. Across file systems the bytes are copied
    under a hidden name (``.<name>.moving``) in ``dest``'s folder, renamed to ``dest``, and
    only then is ``source`` removed: nobody sees a half-copied ``dest``, and ``source`` stays
    until ``dest`` is complete.

    Returns:
        True when the file was copied across file systems, False when renamed.

    Raises:
        FileNotFoundError: ``source`` vanished.
        OSError: the move failed (``source`` is still there).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, dest)
        return False
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    partial = dest.with_name(f".{dest.name}.moving")
    try:
        shutil.copy2(source, partial)
        os.rename(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.unlink(source)
    return True


def is_forced_name(name: str) -> bool:
    """Return whether a file name asks for a repeat import: ``force`` is one of its dotted parts.

    ``leads.force.csv`` (what ``leadflow submit --force`` names the copy) or
    ``leads.csv.force``, in any case. Such a file is imported even when the same bytes were
    imported before with the same options (it is never a ``duplicate``).
    """
    return "force" in name.lower().split(".")[1:]


def forced_name(name: str) -> str:
    """Return ``name`` with ``.force`` before its extension (``a.csv`` -> ``a.force.csv``)."""
    if is_forced_name(name):
        return name
    stem, _, ext = name.rpartition(".")
    return f"{stem}.force.{ext}" if stem else f"{name}.force"


def _candidates(name: str) -> Iterator[str]:
    """``name``, then ``name-2`` ... before the extension (``a.force.csv``: ``a-2.force.csv``)."""
    yield name
    forced = is_forced_name(name)
    plain = ".".join(p for i, p in enumerate(name.split(".")) if i == 0 or p.lower() != "force")
    stem, dot, ext = plain.rpartition(".")
    if not stem:
        stem, dot, ext = plain, "", ""
    for n in range(2, 10_000):
        candidate = f"{stem}-{n}{dot}{ext}"
        yield forced_name(candidate) if forced else candidate


def _link_free_name(tmp: Path, folder: Path, name: str) -> Path:
    """Give ``tmp`` a free name in ``folder`` without ever replacing a file; return it."""
    for candidate in _candidates(name):
        dest = folder / candidate
        try:
            os.link(tmp, dest)
        except FileExistsError:
            continue
        except OSError as exc:  # no hard links here (some network shares): rename instead
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
                raise
            if dest.exists():
                continue
            tmp.rename(dest)
            return dest
        tmp.unlink()
        return dest
    raise FileExistsError(errno.EEXIST, "no free name", str(folder / name))


def drop_into(source: Path, folder: Path, name: str, *, move: bool) -> Path:
    """Put ``source`` into ``folder`` as ``name`` (or ``name-2`` ...) atomically; return the path.

    The bytes land under a hidden temporary name in ``folder`` first, so a watcher only ever
    sees the complete file, and an existing file is never replaced. With ``move`` the source
    is removed afterwards. A missing ``folder`` is created ``DROP_FOLDER_MODE``.

    Raises:
        OSError: the folder is not writable, the disk is full, the source is unreadable.
    """
    try:  # a drop folder made here gets the drop folders' mode, as the daemon makes them
        folder.mkdir(parents=True)
        os.chmod(folder, DROP_FOLDER_MODE)
    except FileExistsError:
        pass
    tmp = folder / f".{name}.{os.getpid()}.part"
    moved = False
    try:
        if move:
            try:
                os.rename(source, tmp)
                moved = True
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
        if not moved:
            shutil.copy2(source, tmp)
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
        dest = _link_free_name(tmp, folder, name)
    except BaseException:
        if moved and tmp.exists():
            os.rename(tmp, source)
        else:
            tmp.unlink(missing_ok=True)
        raise
    if move and not moved:
        source.unlink()
    return dest


def pause_file(database: Path) -> Path:
    """Return ``<database>.paused``: present (JSON) while a running daemon has paused work."""
    return Path(str(database) + ".paused")


def read_pause(database: Path) -> dict[str, Any] | None:
    """Return what ``<database>.paused`` says (``reason``, ``message``), or None."""
    try:
        data = json.loads(pause_file(database).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
