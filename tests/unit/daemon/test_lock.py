"""One daemon per database (orchestrator/store/lock.py): the flock on ``<database>.lock``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import DatabaseLocked
from orchestrator.store import Store
from orchestrator.store.lock import SingleDaemonLock, daemon_running, lock_file


async def test_only_one_daemon_per_database(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    with SingleDaemonLock(db):
        with pytest.raises(DatabaseLocked, match="another leadflow daemon"), SingleDaemonLock(db):
            pass
        async with Store.open(db) as reader:  # status still works
            assert (await reader.counts_by_status())["files"]["queued"] == 0
        assert daemon_running(db) == os.getpid()
    assert daemon_running(db) is None
    with SingleDaemonLock(db):
        pass  # released on exit


def test_status_never_creates_the_lock_file(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    assert daemon_running(db) is None
    assert not lock_file(db).exists()


HOLDER = """
import sys
from pathlib import Path
from orchestrator.store.lock import SingleDaemonLock
with SingleDaemonLock(Path(sys.argv[1])):
    print('held', flush=True)
    sys.stdin.readline()
"""


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DatabaseLocked, match=f"pid {holder.pid}"), SingleDaemonLock(db):
            pass
        assert daemon_running(db) == holder.pid
    finally:
        holder.communicate("\n", timeout=30)
