"""One daemon per database: an exclusive ``flock`` on ``<database>.lock``.

``leadflow run`` holds it for as long as it runs (``Daemon`` takes it before it opens the
store); ``leadflow status`` only peeks at it (``daemon_running``) and never creates the file.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Self

from orchestrator.errors import DatabaseLocked


def lock_file(database: Path) -> Path:
    """Return ``<database>.lock``, which holds the running daemon's pid."""
    return Path(str(database) + ".lock")


class SingleDaemonLock:
    """An exclusive ``flock`` on ``<database>.lock``: one daemon per database.

    Use it as a context manager (``with SingleDaemonLock(database):``), or call ``acquire``
    and ``release``.

    Raises:
        DatabaseLocked: from ``acquire`` when another process holds it.
    """

    def __init__(self, database: Path) -> None:
        self.path = lock_file(database)
        self._fd: int | None = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock without waiting."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = ""
            try:
                holder = self.path.read_text().strip()
            except OSError:
                pass
            raise DatabaseLocked(
                f"another leadflow daemon (pid {holder or '?'}) is using {self.path.parent}; "
                "stop it first or point paths.database elsewhere"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def daemon_running(database: Path) -> int | None:
    """Return the pid of the daemon holding ``<database>.lock`` (0 if unknown), or None.

    Tries a non-blocking shared ``flock`` on the lock file and lets it go at once; a daemon
    holds it exclusively for as long as it runs. Never creates the file.
    """
    path = lock_file(database)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
