"""The packer: forms the next upload from parts waiting in the FIFO, when ``packing`` says so.

It reads the FIFO head and the waiting parts of its key (``Store.waiting_head``,
``waiting_group``), asks ``packing.plan_pack``, and on ``send`` writes the pack file and records
the upload with its parts in one transaction (``Store.form_upload``), in status ``submitting``:
the scheduler sends it at once. A one-part upload is the part's own prepared file (a big
file's chunk is never copied); a pack of several is ``paths.work/packs/pack-<first>-<last>.csv``:
the first part's header, then each part's rows in FIFO order, written under a temporary name,
fsynced and renamed before the upload is recorded. A crash in between leaves an orphan pack
file, removed at start-up (``remove_orphan_packs``); its parts are still waiting.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import structlog

from orchestrator.models import PartRecord, UploadRecord
from orchestrator.places import packs_dir
from orchestrator.scheduling import packing
from orchestrator.settings import Settings
from orchestrator.store import Store

log = structlog.get_logger(__name__)

class UnreadablePart(Exception):
    """A part's prepared file cannot go into a pack (unreadable, or another header).

    Attributes:
        index: the part's position in the pack being written.
        reason: one sentence.
    """

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def write_pack(dest: Path, parts: Sequence[tuple[str, int]]) -> int:
    """Write a pack file: the first part's header, then every part's rows (blocking).

    Args:
        dest: the pack file to create (its folder is created).
        parts: ``(prepared file, header bytes)`` of each part, in order.

    Returns:
        The pack file's size in bytes.

    Raises:
        UnreadablePart: a part's file cannot be read or has another header (nothing kept).
        OSError: the pack cannot be written.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    header: bytes | None = None
    size = 0
    try:
        with open(tmp, "wb") as out:
            for index, (path, header_bytes) in enumerate(parts):
                try:
                    data = Path(path).read_bytes()
                except OSError as exc:
                    raise UnreadablePart(index, f"cannot read {path}: {exc.strerror}") from exc
                head = data[:header_bytes]
                if header is None:
                    header = head
                    out.write(head)
                    size += len(head)
                elif head != header:
                    raise UnreadablePart(index, f"{path} has another header")
                out.write(data[header_bytes:])
                size += len(data) - header_bytes
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


def remove_orphan_packs(folder: Path, known: set[str]) -> list[Path]:
    """Delete pack files no upload refers to (a crash before the upload was recorded).

    Args:
        folder: ``paths.work/packs``.
        known: the path of every upload in the database.

    Returns:
        The files removed.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in os.scandir(folder):
        if not entry.is_file(follow_symlinks=False) or not entry.name.startswith("pack-"):
            continue
        if entry.path in known:
            continue
        os.unlink(entry.path)
        removed.append(Path(entry.path))
    return removed


class Packer:
    """Forms uploads from waiting parts (see the module docstring).

    Args:
        settings: ``limits.max_upload_bytes``, ``paths.work``.
        store: the database.
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._dir = packs_dir(settings.paths, store.instance)

    def use_settings(self, settings: Settings) -> None:
        """Take reloaded settings (the size limits; ``paths`` never change live)."""
        self._settings = settings

    async def next_upload(
        self, at_marketo: int, now: float
    ) -> tuple[UploadRecord | None, float | None]:
        """Form the next upload if it should leave now.

        Args:
            at_marketo: our jobs at Marketo (queued, importing or being submitted).
            now: epoch seconds.

        Returns:
            ``(upload, None)``: a new upload in ``submitting``, to send now;
            ``(None, wait_until)``: parts wait (``wait_until`` None: until an event);
            ``(None, None)`` also when nothing waits.
        """
        head = await self._store.waiting_head()
        if head is None:
            return None, None
        budget = self._settings.limits.max_file_bytes
        packable = head.pack_key is not None and head.header_bytes > 0
        first = packing.Waiting(head.id, head.rows, head.size_bytes, head.header_bytes,
                                head.send_by)
        group, group_rows, due = [first], head.rows, head.send_by
        if packable:
            assert head.pack_key is not None
            found = await self._store.waiting_group(head.pack_key, budget - head.header_bytes)
            group = [packing.Waiting(*row) for row in found] or [first]
            _, group_rows, due = await self._store.waiting_group_totals(head.pack_key)
        plan = packing.plan_pack(group, group_rows, packable=packable, at_marketo=at_marketo,
                                 budget=budget, now=now, group_due=due)
        if not plan.send:
            return None, plan.wait_until
        if len(plan.parts) == 1:
            parts = [head]
        else:
            assert head.pack_key is not None
            parts = await self._store.waiting_upto(head.pack_key, plan.parts[-1])
        return await self._form(parts, plan.reason), None

    async def _form(self, parts: list[PartRecord], reason: str) -> UploadRecord:
        """Write the pack file (several parts) and record the upload with its parts."""
        path, size = parts[0].path, parts[0].size_bytes
        if len(parts) > 1:
            dest = self._dir / f"pack-{parts[0].id}-{parts[-1].id}.csv"
            try:
                size = await asyncio.to_thread(
                    write_pack, dest, [(p.path, p.header_bytes) for p in parts]
                )
                path = str(dest)
            except UnreadablePart as exc:
                log.warning("pack_part_unreadable", part_id=parts[exc.index].id,
                            file_id=parts[exc.index].file_id, error=exc.reason)
                # The parts before it go together; it goes alone later (its own path).
                return await self._form(parts[: max(exc.index, 1)], reason)
        first_rows: list[tuple[int, int]] = []
        rows = 0
        for part in parts:
            first_rows.append((part.id, rows))
            rows += part.rows
        upload = await self._store.form_upload(
            first_rows, path=path, size_bytes=size, rows=rows, kind=parts[0].kind,
            options=parts[0].options,
        )
        log.info(
            "pack_formed",
            upload_id=upload.id,
            parts=len(parts),
            files=len({p.file_id for p in parts}),
            rows=rows,
            size_bytes=size,
            reason=reason,
        )
        return upload
