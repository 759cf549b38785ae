"""``leadflow retry FILE_ID``: send a file's failed uploads again, or retake a rejected file.

It needs no running daemon: it writes only through the store's normal guarded transitions
(the single-daemon lock is taken only by ``leadflow run``), so it is safe while a daemon runs.

- A ``partial`` (or ``rejected``) file whose upload failed or was rejected at Marketo: only
  that file's rows are sent again. The source goes back from the archive into the work
  folder; in one transaction the file's parts leave their dead upload (which keeps the other
  files that rode in it, whose reports stand) and wait in the FIFO again, due at once (they
  may share a new upload with other waiting files), and the file goes back to ``queued``; its
  results folder is rewritten when the parts are imported. The re-sent parts' Marketo options (``lookupField``, ``listId``, ``partitionName``, ``programId``,
  ``programMemberStatus``, ``objectApiName``, ``format``) are derived again from the CURRENT
  settings of the file's route (the ``import`` section for the inbox root), so a setting fixed
  after the failure is used. The file keeps its route (or takes ``--route NAME``); a route
  no longer known (to the running daemon, when one runs) is exit 2. A file whose bytes
  were imported since as another file is not re-queued (exit 1, naming that file).
- A file rejected with nothing to re-send (rejected by intake, or every row rejected) is moved
  from ``paths.rejected`` back into the inbox (``places.drop_into``), where it is taken as a
  new file (new id, new report).

Exit codes: 0 done, 1 nothing done (the line says why), 2 bad usage (unknown route or id).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from orchestrator.commands.output import EXIT_NOTHING, EXIT_OK, EXIT_USAGE, print_err, print_out
from orchestrator.commands.routes import RoutesInForce, routes_in_force
from orchestrator.commands.status import missing_database
from orchestrator.errors import DuplicateContent, InvalidTransition, StoreError
from orchestrator.intake.uploads import import_key, pack_key, upload_options
from orchestrator.models import UPLOAD_DEAD, FileRecord, FileStatus, PartRecord
from orchestrator.places import (
    drop_into,
    move,
    rejected_source,
    results_dir,
    route_folder,
    source_path,
)
from orchestrator.settings import ImportKind, ImportOptions, Route, Settings
from orchestrator.store import Store, store_target


async def retry_command(settings: Settings, file_id: int, route: str | None = None) -> int:
    """Re-queue a file's failed uploads, or put a rejected file back into the inbox.

    The file keeps its route: ``route`` when given, else the route it came through, else the
    route of the inbox folder it was dropped in (a file an older leadflow rejected because
    its folder was no route then). Routes are those of the running daemon when one runs
    (``routes_in_force``), else the settings file's.

    Returns:
        0 when something was re-queued or moved (prints one line saying where), 1 when there
        is nothing to retry (prints why) or no database, 2 when there is no such file or its
        route is unknown (to the running daemon).
    """
    missing = missing_database(settings)
    if missing is not None:
        print_err(missing)
        return EXIT_NOTHING
    async with Store.open(store_target(settings)) as store:
        code, message = await retry_file(settings, store, file_id, route)
    (print_out if code == EXIT_OK else print_err)(message)
    return code


async def retry_file(
    settings: Settings, store: Store, file_id: int, route: str | None = None
) -> tuple[int, str]:
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
    dead = await _dead_parts(store, file)
    if file.status is FileStatus.PARTIAL and not dead:
        return EXIT_NOTHING, (
            f"{label} has no failed uploads: nothing to retry; the rows that were not imported "
            f"are listed in {results / 'failures.csv'}: fix them and submit them as a new file"
        )
    target = _retry_route(settings, file, route, await routes_in_force(settings, store))
    if isinstance(target, str):
        return EXIT_USAGE, target
    if dead:
        missing = [p.seq for p in dead if not await asyncio.to_thread(Path(p.path).is_file)]
        if missing:
            return EXIT_NOTHING, (
                f"{label}: cannot re-send uploads {missing}: their prepared files are gone "
                f"from {settings.paths.work}"
            )
        kind, options = _options_of(settings, target)
        if any(u.kind != kind for u in dead):
            return EXIT_NOTHING, (
                f"{label}: its route {_name(target)!r} now imports {kind}, its prepared "
                f"uploads are {dead[0].kind}: submit the file again instead"
            )
        key = _retry_key(file, kind, options)
        twin = await _imported_twin(store, file, key)
        if twin is not None:
            return EXIT_NOTHING, twin
        packs = (target or settings.import_).pack
        code, line = await _requeue(store, file, dead, label, options, key, target, packs)
        return code, line + _stale_note(settings, target)
    return await _retake(settings, store, file, label, target)


def _stale_note(settings: Settings, route: Route | None) -> str:
    """A note when the running daemon's route differs from the settings file's (not reloaded)."""
    written = next((r for r in settings.routes if route is not None and r.name == route.name),
                   None)
    if route is None or written is None or written == route:
        return ""
    return (
        f"; note: route {route.name!r} is re-sent with the running daemon's settings, which "
        "differ from the settings file: reload the daemon first (systemctl reload leadflow / "
        "kill -HUP) to use the file's, then retry"
    )


async def _dead_parts(store: Store, file: FileRecord) -> list[PartRecord]:
    """The file's parts whose upload failed or was rejected at Marketo (to send again)."""
    dead: list[PartRecord] = []
    for part in await store.parts_of_file(file.id):
        upload = await store.get_upload(part.upload_id) if part.upload_id is not None else None
        if upload is not None and upload.status in UPLOAD_DEAD:
            dead.append(part)
    return dead


def _name(route: Route | None) -> str | None:
    return route.name if route is not None else None


def _retry_route(
    settings: Settings, file: FileRecord, wanted: str | None, routes: RoutesInForce
) -> Route | str | None:
    """The route a retried file goes to (None: the inbox root), or a one-line refusal.

    ``wanted`` (``--route``) first, then the route the file came through, then the route
    watching the inbox folder it was found in (an older leadflow took files from folders
    that were no route then, with no route).
    """
    if wanted is None and file.route is None:
        folder = _inbox_folder(settings, file)
        if folder is None:
            return None
        found = routes.for_folder(folder)
        if found is None:
            return (
                f"leadflow: file {file.id} was dropped in the inbox folder '{folder}', which "
                f"is not a route ({routes.whose()}: {routes.known()}): add the route (and "
                "reload the daemon), or give --route NAME"
            )
        return found
    name = wanted if wanted is not None else file.route
    assert name is not None
    found = routes.find(name)
    if found is not None:
        return found
    refusal = routes.refuse(name, settings)
    if refusal is not None:
        return refusal
    if wanted is not None:
        return f"leadflow: unknown route {name!r} ({routes.whose()}: {routes.known()})"
    return (
        f"leadflow: file {file.id} came through route {name!r}, which is no longer in the "
        f"settings ({routes.whose()}: {routes.known()}): restore it, or give --route NAME"
    )


def _inbox_folder(settings: Settings, file: FileRecord) -> str | None:
    """The inbox subfolder a file was found in (``events``), or None for the inbox root."""
    try:
        folder = Path(file.inbox_path).parent.relative_to(settings.paths.inbox)
    except ValueError:
        return None
    text = folder.as_posix()
    return None if text in ("", ".") else text


def _options_of(settings: Settings, route: Route | None) -> tuple[str, dict[str, Any]]:
    """Return ``(kind, Marketo options)`` of a route (the ``import`` section for None)."""
    source: ImportOptions = route if route is not None else settings.import_
    kind = route.kind if route is not None else ImportKind.LEADS
    return kind.value, upload_options(source, kind, source.lookup_field)


def _retry_key(file: FileRecord, kind: str, options: dict[str, Any]) -> str | None:
    """The import key a re-queued file gets (None for a file recorded without one)."""
    return import_key(kind, options, file.instance) if file.import_key is not None else None


async def _imported_twin(store: Store, file: FileRecord, key: str | None) -> str | None:
    """Return why ``file`` cannot be re-queued, or None.

    It cannot when its bytes were imported since as another file with the import options
    ``key`` it would be sent with; a forced file is never held back.
    """
    if not file.sha256 or file.forced:
        return None
    twin = await store.imported_twin(file.sha256, key)
    if twin is None or twin.id == file.id:
        return None
    return (
        f"file {file.id} ({file.name}): the same bytes were imported since as file {twin.id} "
        f"({twin.name}, {twin.status.value}); nothing to retry here (see `leadflow status`)"
    )


async def _requeue(
    store: Store,
    file: FileRecord,
    dead: list[PartRecord],
    label: str,
    options: dict[str, Any],
    key: str | None,
    route: Route | None,
    packs: bool,
) -> tuple[int, str]:
    """Send the file's dead parts again: they wait for a pack; the file goes ``queued``.

    Args:
        dead: the parts whose upload failed or was rejected.
        options: the Marketo parameters from the current settings.
        key: the file's import key from now on.
        route: the route it goes to (None: the inbox root).
        packs: whether its parts may share uploads with other files' (``pack``).
    """
    info = dict(file.info)
    found = info.get("route")
    route_info: dict[str, Any] = found if isinstance(found, dict) else {}
    info["route"] = {"name": _name(route), "kind": route_info.get("kind"), **options}
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
    columns = [str(c) for c in file.info.get("header") or []]
    # One transaction: the parts leave their dead upload and the file is queued again, or
    # nothing changed (a part never waits for a pack while its file is finished).
    try:
        await store.detach_parts(
            [
                (
                    p.id,
                    p.upload_id or 0,
                    pack_key(p.kind, options, columns)
                    if packs and columns and p.header_bytes > 0 else None,
                )
                for p in dead
            ],
            options,
            file=(
                file.id,
                file.status,
                {
                    "reported_at": None,
                    "finished_at": None,
                    "error": None,
                    "info": info,
                    "import_key": key,
                    "route": _name(route),
                },
            ),
        )
    except DuplicateContent as exc:
        twin = await _imported_twin(store, file, key)
        return EXIT_NOTHING, twin or f"{label}: cannot re-queue it: {exc}"
    except InvalidTransition as exc:
        return EXIT_NOTHING, f"{label}: cannot re-queue it: {exc}"
    except StoreError as exc:
        return EXIT_NOTHING, f"{label}: its parts changed meanwhile ({exc}); try again"
    where = f"route {route.name}" if route is not None else "the inbox root's options"
    return EXIT_OK, (
        f"{label}: {len(dead)} upload(s) re-queued with {where} (source back in "
        f"{source.parent}); the daemon sends them again (only this file's rows) and rewrites "
        "its results when they finish"
    )


async def _retake(
    settings: Settings, store: Store, file: FileRecord, label: str, route: Route | None
) -> tuple[int, str]:
    info = dict(file.info)
    archived = Path(
        info.get("archived_path") or rejected_source(settings.paths, file.name, file.id)
    )
    if not await asyncio.to_thread(archived.is_file):
        return EXIT_NOTHING, f"{label}: its source is no longer in {archived.parent}"
    folder = route_folder(settings.paths.inbox, route)
    try:
        dest = await asyncio.to_thread(drop_into, archived, folder, file.name, move=True)
    except OSError as exc:
        return EXIT_NOTHING, f"{label}: cannot move {archived} into {folder}: {exc}"
    info.pop("archived_path", None)
    info["retaken_to"] = str(dest)
    await store.transition_file(file.id, file.status, file.status, info=info)
    where = f"route {route.name}" if route is not None else "inbox root"
    return EXIT_OK, (
        f"{label} was {file.status.value}: moved back into the inbox as {dest} ({where}); "
        "it is taken as a new file with a new id and report"
    )
