"""``leadflow retry FILE_ID``: send a file's failed uploads again, or retake a rejected file.

It needs no running daemon: it writes only through the store's normal guarded transitions
(the single-daemon lock is taken only by ``leadflow run``), so it is safe while a daemon runs.

- A ``partial`` (or ``rejected``) file whose uploads failed or were rejected at Marketo: the
  source goes back from the archive into the work folder, the uploads go
  ``failed|rejected -> queued`` with their failure counters cleared, and the file goes back to
  ``queued``; its results folder is rewritten when the uploads finish. Each re-queued
  upload's Marketo options (``lookupField``, ``listId``, ``partitionName``, ``programId``,
  ``programMemberStatus``, ``objectApiName``, ``format``) are derived again from the CURRENT
  settings of the file's route (the ``import`` section for the inbox root), so a setting fixed
  after the failure is used; a route no longer in the settings is exit 2. A file whose bytes
  were imported since as another file is not re-queued (exit 1, naming that file).
- A file rejected with nothing to re-send (rejected by intake, or every row rejected) is moved
  from ``paths.rejected`` back into the inbox (``places.drop_into``), where it is taken as a
  new file (new id, new report).

Exit codes: 0 done, 1 nothing done (the line says why), 2 bad usage (unknown route or id).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from orchestrator.commands.output import EXIT_NOTHING, EXIT_OK, EXIT_USAGE, print_err, print_out
from orchestrator.commands.status import missing_database
from orchestrator.errors import InvalidTransition
from orchestrator.intake.uploads import upload_options
from orchestrator.models import UPLOAD_DEAD, FileRecord, FileStatus, UploadStatus
from orchestrator.places import (
    drop_into,
    move,
    rejected_source,
    results_dir,
    route_folder,
    source_path,
)
from orchestrator.settings import ImportKind, ImportSettings, Settings
from orchestrator.store import Store


async def retry_command(settings: Settings, file_id: int) -> int:
    """Re-queue a file's failed uploads, or put a rejected file back into the inbox.

    Returns:
        0 when something was re-queued or moved (prints what), 1 when there is nothing to
        retry (prints why) or no database, 2 when there is no such file.
    """
    missing = missing_database(settings)
    if missing is not None:
        print_err(missing)
        return EXIT_NOTHING
    async with Store.open(settings.paths.database) as store:
        code, message = await retry_file(settings, store, file_id)
    (print_out if code == EXIT_OK else print_err)(message)
    return code


async def retry_file(settings: Settings, store: Store, file_id: int) -> tuple[int, str]:
    """Do the work of ``retry_command``; return ``(exit code, one line for the operator)``."""
    file = await store.get_file(file_id)
    if file is None:
        return EXIT_USAGE, f"leadflow: no file with id {file_id} (see `leadflow status`)"
    label = f"file {file.id} ({file.name})"
    if file.reported_at is None:
        return EXIT_NOTHING, f"{label} is {file.status.value} and not finished: nothing to retry"
    results = results_dir(settings.paths, file.name, file.id)
    if file.status is FileStatus.COMPLETE:
        return EXIT_NOTHING, f"{label} is complete: every row was imported; nothing to retry"
    if file.status is FileStatus.DUPLICATE:
        return EXIT_NOTHING, f"{label} is a duplicate of a file already imported: {file.error}"
    uploads = await store.uploads_of_file(file.id)
    dead = [u for u in uploads if u.status in UPLOAD_DEAD]
    if dead:
        missing = [u.seq for u in dead if not await asyncio.to_thread(Path(u.path).is_file)]
        if missing:
            return EXIT_NOTHING, (
                f"{label}: cannot re-send uploads {missing}: their prepared files are gone "
                f"from {settings.paths.work}"
            )
        derived = _current_options(settings, file)
        if isinstance(derived, str):
            return EXIT_USAGE, derived
        kind, options = derived
        if any(u.kind != kind for u in dead):
            return EXIT_NOTHING, (
                f"{label}: its route {file.route!r} now imports {kind}, its prepared uploads "
                f"are {dead[0].kind}: submit the file again instead"
            )
        twin = await _imported_twin(store, file)
        if twin is not None:
            return EXIT_NOTHING, twin
        return await _requeue(store, file, [u.id for u in dead], label, options)
    if file.status is FileStatus.PARTIAL:
        return EXIT_NOTHING, (
            f"{label} has no failed uploads: nothing to retry; the rows that were not imported "
            f"are listed in {results / 'failures.csv'}: fix them and submit them as a new file"
        )
    return await _retake(settings, store, file, label)


def _current_options(settings: Settings, file: FileRecord) -> tuple[str, dict[str, Any]] | str:
    """Return ``(kind, Marketo options)`` from the current settings of the file's route.

    Returns:
        A one-line error instead when the file's route is no longer in the settings.
    """
    source: ImportSettings
    if file.route is None:
        source, kind = settings.import_, ImportKind.LEADS
    else:
        route = next((r for r in settings.routes if r.name == file.route), None)
        if route is None:
            known = ", ".join(r.name for r in settings.routes) or "none configured"
            return (
                f"leadflow: file {file.id} came through route {file.route!r}, which is no "
                f"longer in the settings (known routes: {known}): restore it to retry"
            )
        source, kind = route, route.kind
    return kind.value, upload_options(source, kind, source.lookup_field)


async def _imported_twin(store: Store, file: FileRecord) -> str | None:
    """Return why ``file`` cannot be re-queued when its bytes were imported since, or None."""
    if not file.sha256:
        return None
    twin = await store.imported_file_with_sha(file.sha256)
    if twin is None or twin.id == file.id:
        return None
    return (
        f"file {file.id} ({file.name}): the same bytes were imported since as file {twin.id} "
        f"({twin.name}, {twin.status.value}); nothing to retry here (see `leadflow status`)"
    )


async def _requeue(
    store: Store, file: FileRecord, upload_ids: list[int], label: str, options: dict[str, Any]
) -> tuple[int, str]:
    info = dict(file.info)
    found = info.get("route")
    route_info: dict[str, Any] = found if isinstance(found, dict) else {}
    info["route"] = {"name": route_info.get("name", file.route),
                     "kind": route_info.get("kind"), **options}
    if "lookupField" in options:
        info["lookup_field"] = options["lookupField"]
    archived = info.pop("archived_path", None)
    source = source_path(file)
    if (
        archived
        and await asyncio.to_thread(Path(archived).exists)
        and not await asyncio.to_thread(source.exists)
    ):
        try:
            await asyncio.to_thread(move, Path(archived), source)
        except OSError as exc:
            return EXIT_NOTHING, f"{label}: cannot move {archived} back to {source}: {exc}"
    # Uploads first, then the file: until the file is queued no reporter looks at it again.
    for upload_id in upload_ids:
        try:
            await store.transition_upload(
                upload_id,
                (UploadStatus.FAILED, UploadStatus.REJECTED),
                UploadStatus.QUEUED,
                batch_id=None,
                marketo_status=None,
                num_leads_processed=None,
                num_rows_failed=None,
                num_rows_with_warning=None,
                message=None,
                batch_failures=0,
                not_before=None,
                next_poll_at=None,
                error_code=None,
                error=None,
                finished_at=None,
                options=options,
            )
        except InvalidTransition as exc:
            return EXIT_NOTHING, f"{label}: upload changed meanwhile ({exc}); try again"
    try:
        await store.transition_file(
            file.id,
            file.status,
            FileStatus.QUEUED,
            reported_at=None,
            finished_at=None,
            error=None,
            info=info,
        )
    except sqlite3.IntegrityError as exc:
        twin = await _imported_twin(store, file)
        return EXIT_NOTHING, twin or f"{label}: cannot re-queue it: {exc}"
    except InvalidTransition as exc:
        return EXIT_NOTHING, f"{label}: cannot re-queue it: {exc}"
    return EXIT_OK, (
        f"{label}: {len(upload_ids)} upload(s) re-queued; the daemon sends them again and "
        "rewrites its results when they finish"
    )


async def _retake(
    settings: Settings, store: Store, file: FileRecord, label: str
) -> tuple[int, str]:
    info = dict(file.info)
    archived = Path(
        info.get("archived_path") or rejected_source(settings.paths, file.name, file.id)
    )
    if not await asyncio.to_thread(archived.is_file):
        return EXIT_NOTHING, f"{label}: its source is no longer in {archived.parent}"
    route = next((r for r in settings.routes if r.name == file.route), None)
    folder = route_folder(settings.paths.inbox, route)
    try:
        dest = await asyncio.to_thread(drop_into, archived, folder, file.name, move=True)
    except OSError as exc:
        return EXIT_NOTHING, f"{label}: cannot move {archived} into {folder}: {exc}"
    info.pop("archived_path", None)
    info["retaken_to"] = str(dest)
    await store.transition_file(file.id, file.status, file.status, info=info)
    return EXIT_OK, (
        f"{label} was {file.status.value}: moved back into the inbox as {dest}; "
        "it is taken as a new file with a new id and report"
    )
