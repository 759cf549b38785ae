"""The watched folder: which entries are candidates, and when a candidate is stable.

Rules (issue 5):

- Ignored without a word: names starting with ``.`` or ``~$``, ending in ``.tmp`` or
  ``.part`` (files being written by editors, browsers, rsync, scp, Excel).
- Ignored and logged once: symlinks (never followed, so nothing outside the inbox is read),
  anything that is not a regular file or a folder, and folders nested inside a route folder.
- Routes: a file at the inbox root takes the ``import`` defaults; a file in a route's folder
  takes the route. A file in a first-level folder that is no route is a candidate too, and is
  then rejected with a reason that names the folder: a user who dropped a file there expects
  it to be processed, so a silent ignore would look like a loss.
- Stability: a candidate is taken once its size and mtime have not changed, in our own
  observations, for ``intake.stable_s`` (mtimes are compared only with each other, so a
  network share with a skewed clock is safe). A file that was moved into the inbox complete
  is taken at once: a watch event ``added`` that comes with no ``modified`` for the path in
  the same batch, for a non-empty file whose mtime is at least ``stable_s`` old (it was
  written before the move), or that comes with the deletion of an ignored temporary name in
  the same folder (the write-then-rename pattern). A later ``modified`` event cancels it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from watchfiles import Change

from orchestrator.places import route_folder
from orchestrator.settings import Route, Settings

_IGNORED_SUFFIXES = (".tmp", ".part")


def is_ignored_name(name: str) -> bool:
    """Return whether a file name is one of the ignored patterns (dot, ``~$``, .tmp, .part)."""
    lowered = name.lower()
    return name.startswith((".", "~$")) or lowered.endswith(_IGNORED_SUFFIXES)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A regular file in the inbox that may be taken.

    Attributes:
        path: absolute path in the inbox.
        route: the route, or None for the inbox root (``import`` defaults).
        size: bytes.
        mtime_ns: modification time, nanoseconds.
        route_error: set when the file is in a folder that is no route; it will be rejected.
    """

    path: Path
    route: Route | None
    size: int
    mtime_ns: int
    route_error: str | None = None


@dataclass(slots=True)
class InboxScan:
    """One listing of the inbox: candidates, and entries ignored with the reason."""

    candidates: list[Candidate] = field(default_factory=list)
    ignored: list[tuple[Path, str]] = field(default_factory=list)


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []


def _files_in(folder: Path, route: Route | None, error: str | None, out: InboxScan) -> None:
    for entry in _entries(folder):
        if not is_ignored_name(entry.name):
            _add_entry(entry, route, error, out, nested_folder=True)


def _add_entry(
    entry: os.DirEntry[str],
    route: Route | None,
    error: str | None,
    out: InboxScan,
    *,
    nested_folder: bool,
) -> None:
    """Add one entry to ``out``: a regular file as a candidate, anything else as ignored.

    A folder is listed as ignored only when ``nested_folder`` (inside a route folder); at
    the inbox root folders are left to ``scan_inbox``. An entry gone meanwhile is skipped.
    """
    path = Path(entry.path)
    try:
        info = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        out.ignored.append((path, "symlink (not followed)"))
    elif stat.S_ISREG(info.st_mode):
        out.candidates.append(Candidate(path, route, info.st_size, info.st_mtime_ns, error))
    elif stat.S_ISDIR(info.st_mode):
        if nested_folder:
            out.ignored.append((path, "folder nested in a route folder (not scanned)"))
    else:
        out.ignored.append((path, "not a regular file"))


def unknown_folder_reason(name: str) -> str:
    """The rejection reason of a file dropped in inbox folder ``name``, which is no route."""
    return (
        f"The inbox folder '{name}' is not a route (no [[routes]] entry has folder "
        f"'{name}'); drop files at the inbox root or in a route folder."
    )


def scan_inbox(inbox: Path, settings: Settings) -> InboxScan:
    """List the inbox root and its route folders (no symlink is followed).

    Returns:
        Candidates sorted by folder then name, and ignored entries with their reason.
    """
    out = InboxScan()
    route_dirs = {r.subfolder: r for r in settings.routes}
    prefixes = {part for sub in route_dirs for part in _parents(sub)}
    root = _entries(inbox)
    _files_in_root(root, out, set(route_dirs) | prefixes)
    for entry in root:
        name = entry.name
        if is_ignored_name(name) or entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            continue
        if name in route_dirs or name in prefixes:
            continue
        _files_in(Path(entry.path), None, unknown_folder_reason(name), out)
    for _sub, route in sorted(route_dirs.items()):
        folder = route_folder(inbox, route)
        if folder.is_symlink():
            out.ignored.append((folder, "route folder is a symlink (not followed)"))
            continue
        _files_in(folder, route, None, out)
    return out


def _parents(sub: str) -> list[str]:
    parts = sub.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _files_in_root(root: list[os.DirEntry[str]], out: InboxScan, route_names: set[str]) -> None:
    for entry in root:
        if not (is_ignored_name(entry.name) or entry.name in route_names):
            _add_entry(entry, None, None, out, nested_folder=False)


@dataclass(slots=True)
class _Seen:
    size: int
    mtime_ns: int
    since: float
    moved_in: bool


class StabilityTracker:
    """Remembers each candidate's size and mtime and says when it may be taken.

    Args:
        stable_s: seconds without change before a file is taken (``intake.stable_s``).
    """

    def __init__(self, stable_s: float) -> None:
        self.stable_s = stable_s
        self._seen: dict[str, _Seen] = {}
        self._moved: set[str] = set()

    def observe(self, path: str, size: int, mtime_ns: int, now: float) -> bool:
        """Record one observation; return whether the file may be taken now."""
        seen = self._seen.get(path)
        if seen is None:
            seen = _Seen(size, mtime_ns, now, path in self._moved)
            self._moved.discard(path)
            self._seen[path] = seen
        elif seen.size != size or seen.mtime_ns != mtime_ns:
            seen.size, seen.mtime_ns, seen.since, seen.moved_in = size, mtime_ns, now, False
        elif path in self._moved:
            self._moved.discard(path)
            seen.moved_in = True
        if seen.moved_in and size > 0:
            return True
        return now - seen.since >= self.stable_s

    def moved_in(self, path: str) -> None:
        """Mark a path as moved into the inbox complete (taken at its next observation)."""
        self._moved.add(path)

    def modified(self, path: str) -> None:
        """A write was seen: the file is not complete, wait for stability."""
        self._moved.discard(path)
        seen = self._seen.get(path)
        if seen is not None:
            seen.moved_in = False

    def forget(self, path: str) -> None:
        """Drop a path (taken, or gone)."""
        self._seen.pop(path, None)
        self._moved.discard(path)

    def retain(self, paths: Iterable[str]) -> None:
        """Forget every path not in ``paths`` (they left the inbox)."""
        keep = set(paths)
        for path in [p for p in self._seen if p not in keep]:
            del self._seen[path]

    def next_due(self) -> float | None:
        """Return the earliest time a tracked file becomes stable, or None."""
        return min((s.since + self.stable_s for s in self._seen.values()), default=None)


def moved_in_paths(
    changes: Iterable[tuple[Change, str]],
    mtimes: dict[str, float],
    now: float,
    stable_s: float,
) -> tuple[set[str], set[str]]:
    """Read one batch of watch events.

    Args:
        changes: ``(Change, path)`` pairs of one batch from ``watchfiles``.
        mtimes: mtime (epoch seconds) of each added path that still exists.
        now: the current time (same clock as ``mtimes``).
        stable_s: ``intake.stable_s``.

    Returns:
        ``(moved_in, modified)``: paths moved in complete (take at once) and paths written to.
    """
    added: set[str] = set()
    modified: set[str] = set()
    temp_gone: set[str] = set()
    for change, path in changes:
        if change == Change.added:
            added.add(path)
        elif change == Change.modified:
            modified.add(path)
        elif change == Change.deleted and is_ignored_name(os.path.basename(path)):
            temp_gone.add(os.path.dirname(path))
    moved: set[str] = set()
    for path in added - modified:
        mtime = mtimes.get(path)
        if mtime is None:
            continue
        if now - mtime >= stable_s or os.path.dirname(path) in temp_gone:
            moved.add(path)
    return moved, modified
