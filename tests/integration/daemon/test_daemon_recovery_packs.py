"""Recovery removes orphan pack files of its own Marketo instance only.

A pack file is written before its upload is recorded; a crash in between leaves an orphan
that recovery deletes. With several instances each has its own pack folder, so recovering one
(at a node's start, or when a node takes its lease) never deletes a pack another instance's
scheduler has just written and not yet recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from orchestrator.daemon.recovery import recover_uploads
from orchestrator.places import packs_dir
from orchestrator.settings import Settings
from orchestrator.store import Store


async def test_recovery_removes_only_its_own_instances_orphan_packs(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    paths = make_settings().paths
    mine, theirs = packs_dir(paths), packs_dir(paths, "sandbox")
    assert theirs.parent == mine and theirs.name == "sandbox"
    for folder in (mine, theirs):
        folder.mkdir(parents=True, exist_ok=True)
    orphan, fresh = mine / "pack-1-2.csv", theirs / "pack-3-4.csv"
    orphan.write_text("email\r\na@x.com\r\n")
    fresh.write_text("email\r\nb@x.com\r\n")
    async with Store.open(tmp_path / "q.db") as store:
        await recover_uploads(store, 1_000.0, packs=mine)  # "default" recovers
        assert not orphan.exists() and fresh.exists()
        await recover_uploads(store.for_instance("sandbox"), 1_000.0, packs=theirs)
        assert not fresh.exists()
