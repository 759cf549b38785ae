"""``leadflow submit`` and ``leadflow retry``: operator commands that need no running daemon.

Both write only through the store's normal guarded transitions (the single-daemon lock is
taken only by ``leadflow run``), so they are safe while a daemon runs.

- ``submit FILE [--route NAME]`` copies a file into the inbox (or the route's subfolder)
  atomically: it is copied under a hidden ``.<name>.<pid>.part`` name in the target folder,
  then hard-linked to its final name, which never replaces an existing file (``name-2.csv``
  is used instead). The watcher therefore never sees a half-copied file.
- ``retry FILE_ID`` re-queues the uploads of a ``partial`` (or ``rejected``) file that failed
  or were rejected at Marketo: the source goes back from the archive into the work folder, the
  uploads go ``failed|rejected -> queued`` with their failure counters cleared, and the file goes
  back to ``queued``; its results folder is rewritten when the uploads finish. Each re-queued
  upload's Marketo options (``lookupField``, ``listId``, ``partitionName``, ``programId``,
  ``programMemberStatus``, ``objectApiName``, ``format``) are derived again from the CURRENT
  settings of the file's route (the ``import`` section for the inbox root), so a setting fixed
  after the failure is used; a route no longer in the settings is exit 2. A file whose bytes
  were imported since as another file is not re-queued (exit 1, naming that file). A file rejected
  with nothing to re-send (rejected by intake, or every row rejected) is moved from
  ``paths.rejected`` back into the inbox, where it is taken as a new file (new id, new report).

Exit codes: 0 done, 1 nothing done (the line says why), 2 bad usage (unknown route or id,
missing file).
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.cli_output import print_out
from orchestrator.errors import InvalidTransition, StoreError
from orchestrator.intake.uploads import import_key, upload_options
from orchestrator.intake.watcher import forced_name, is_forced_name, is_ignored_name
from orchestrator.models import FileRecord, FileStatus, UploadStatus
from orchestrator.results_write import DEAD_UPLOADS, archive_name, move_file, results_dir_name
from orchestrator.settings import ImportKind, ImportSettings, Route, Settings
from orchestrator.status import daemon_running, missing_database
from orchestrator.store import Store

EXIT_OK = 0
EXIT_NOTHING = 1
EXIT_USAGE = 2


def _print_err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


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
    sees the complete file. With ``move`` the source is removed afterwards.

    Raises:
        OSError: the folder is not writable, the disk is full, the source is unreadable.
    """
    folder.mkdir(parents=True, exist_ok=True)
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


@dataclass(frozen=True, slots=True)
class RoutesInForce:
    """The routes files are sent to: the running daemon's, or the settings file's.

    Attributes:
        routes: the routes, in order.
        pid: the running daemon whose recorded routes these are; None when no daemon runs
            (or it recorded none: an older leadflow) and the settings file is the truth.
    """

    routes: tuple[Route, ...]
    pid: int | None = None

    def find(self, name: str) -> Route | None:
        """The route called ``name``, or None."""
        return next((r for r in self.routes if r.name == name), None)

    def for_folder(self, subfolder: str) -> Route | None:
        """The route watching inbox ``subfolder``, or None."""
        return next((r for r in self.routes if r.subfolder == subfolder.strip("/")), None)

    def known(self) -> str:
        """The route names for a message (``none configured`` when there are none)."""
        return ", ".join(r.name for r in self.routes) or "none configured"

    def refuse(self, name: str, settings: Settings) -> str | None:
        """The refusal of a route the settings file has but the running daemon does not.

        Returns:
            One line for the operator (exit 2), or None when there is nothing to refuse.
        """
        if self.pid is None or self.find(name) is not None:
            return None
        if not any(r.name == name for r in settings.routes):
            return None
        return (
            f"leadflow: the running daemon does not know route {name!r} yet: reload it "
            f"(systemctl reload leadflow / kill -HUP {self.pid or '<its pid>'})"
        )


async def routes_in_force(settings: Settings, store: Store | None = None) -> RoutesInForce:
    """Return the routes of the running daemon (as it recorded them), or of the settings.

    While a daemon holds the database lock and has recorded its routes
    (``daemon.publish_routes``), those are what it watches and imports with, whatever the
    settings file says now; with no daemon running, the settings file is the truth.

    Args:
        settings: the settings this command was started with.
        store: an open store to read from (one is opened without migrating otherwise).
    """
    pid = await asyncio.to_thread(daemon_running, settings.paths.database)
    if pid is None or not await asyncio.to_thread(settings.paths.database.exists):
        return RoutesInForce(settings.routes)
    try:
        if store is not None:
            recorded = await store.daemon_routes()
        else:
            async with Store.open(settings.paths.database, migrate_schema=False) as opened:
                recorded = await opened.daemon_routes()
    except (StoreError, sqlite3.Error):  # an older schema: that daemon records nothing
        return RoutesInForce(settings.routes)
    if recorded is None or (pid and recorded[0] != pid):
        return RoutesInForce(settings.routes)  # recorded by an earlier daemon, not this one
    return RoutesInForce(tuple(Route.model_validate(r) for r in recorded[1]), pid)


async def submit_command(
    settings: Settings, file: Path, route: str | None, *, force: bool = False
) -> int:
    """Copy ``file`` into the inbox (the route's subfolder with ``route``) for the daemon.

    With ``force`` the copy is named with ``.force`` before its extension
    (``intake.watcher.forced_name``), so the daemon imports it even if the same bytes were
    imported before with the same options, and its report says which file it repeats.

    Returns:
        0 when copied (prints where), 2 when the file is missing, its name is one intake
        ignores (``is_ignored_name``) or the route unknown, 1 when the copy failed (folder
        not writable, disk full).
    """
    source = await asyncio.to_thread(file.expanduser)
    if not await asyncio.to_thread(source.is_file):
        _print_err(f"leadflow: {source} is not a readable file")
        return EXIT_USAGE
    if is_ignored_name(source.name):
        _print_err(
            f"leadflow: the daemon ignores files named like {source.name!r} (a leading '.' or "
            "'~$', or ending in .tmp or .part): rename it and submit it again"
        )
        return EXIT_USAGE
    folder = settings.paths.inbox
    if route is not None:
        routes = await routes_in_force(settings)
        found = routes.find(route)
        refusal = routes.refuse(route, settings)
        if refusal is not None:
            _print_err(refusal)
            return EXIT_USAGE
        if found is None:
            whose = "the running daemon's routes" if routes.pid is not None else "known routes"
            _print_err(f"leadflow: unknown route {route!r} ({whose}: {routes.known()})")
            return EXIT_USAGE
        written = next((r for r in settings.routes if r.name == route), None)
        if written is not None and written != found:
            _print_err(
                f"leadflow: note: the running daemon imports route {route!r} with its settings "
                "from when it started (the settings file differs now): reload it to use the "
                "file's"
            )
        folder = folder / found.subfolder
    name = forced_name(source.name) if force else source.name
    try:
        dest = await asyncio.to_thread(drop_into, source, folder, name, move=False)
    except OSError as exc:
        _print_err(f"leadflow: cannot copy {source} into {folder}: {exc.strerror or exc}")
        return EXIT_NOTHING
    notes = [f"route {route}"] if route else []
    if force or is_forced_name(name):
        notes.append(
            "forced: imported even if the same bytes were imported before with the same options"
        )
    where = f" ({', '.join(notes)})" if notes else ""
    print_out(f"submitted {source} as {dest}{where}; the daemon takes it from there")
    return EXIT_OK


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
        _print_err(missing)
        return EXIT_NOTHING
    async with Store.open(settings.paths.database) as store:
        code, message = await retry_file(settings, store, file_id, route)
    (print_out if code == EXIT_OK else _print_err)(message)
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
    results = settings.paths.results / results_dir_name(file.name, file.id)
    if file.status is FileStatus.COMPLETE:
        return EXIT_NOTHING, f"{label} is complete: every row was imported; nothing to retry"
    if file.status is FileStatus.DUPLICATE:
        return EXIT_NOTHING, f"{label} is a duplicate of a file already imported: {file.error}"
    uploads = await store.uploads_of_file(file.id)
    dead = [u for u in uploads if u.status in DEAD_UPLOADS]
    if file.status is FileStatus.PARTIAL and not dead:
        return EXIT_NOTHING, (
            f"{label} has no failed uploads: nothing to retry; the rows that were not imported "
            f"are listed in {results / 'failures.csv'}: fix them and submit them as a new file"
        )
    target = _retry_route(settings, file, route, await routes_in_force(settings, store))
    if isinstance(target, str):
        return EXIT_USAGE, target
    if dead:
        missing = [u.seq for u in dead if not await asyncio.to_thread(Path(u.path).is_file)]
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
        return await _requeue(store, file, [u.id for u in dead], label, options, key, target)
    return await _retake(settings, store, file, label, target)


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
    whose = "the running daemon's routes" if routes.pid is not None else "known routes"
    if wanted is None and file.route is None:
        folder = _inbox_folder(settings, file)
        if folder is None:
            return None
        found = routes.for_folder(folder)
        if found is None:
            return (
                f"leadflow: file {file.id} was dropped in the inbox folder '{folder}', which "
                f"is not a route ({whose}: {routes.known()}): add the route (and reload the "
                "daemon), or give --route NAME"
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
        return f"leadflow: unknown route {name!r} ({whose}: {routes.known()})"
    return (
        f"leadflow: file {file.id} came through route {name!r}, which is no longer in the "
        f"settings ({whose}: {routes.known()}): restore it, or give --route NAME"
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
    source: ImportSettings = route if route is not None else settings.import_
    kind = route.kind if route is not None else ImportKind.LEADS
    return kind.value, upload_options(source, kind, source.lookup_field)


def _retry_key(file: FileRecord, kind: str, options: dict[str, Any]) -> str | None:
    """The import key a re-queued file gets (None for a file recorded without one)."""
    return import_key(kind, options) if file.import_key is not None else None


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
    upload_ids: list[int],
    label: str,
    options: dict[str, Any],
    key: str | None,
    route: Route | None,
) -> tuple[int, str]:
    info = dict(file.info)
    found = info.get("route")
    route_info: dict[str, Any] = found if isinstance(found, dict) else {}
    info["route"] = {"name": _name(route), "kind": route_info.get("kind"), **options}
    if "lookupField" in options:
        info["lookup_field"] = options["lookupField"]
    archived = info.pop("archived_path", None)
    source = Path(info.get("source_path") or file.work_path)
    if (
        archived
        and await asyncio.to_thread(Path(archived).exists)
        and not await asyncio.to_thread(source.exists)
    ):
        try:
            await asyncio.to_thread(move_file, Path(archived), source)
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
            import_key=key,
            route=_name(route),
        )
    except sqlite3.IntegrityError as exc:
        twin = await _imported_twin(store, file, key)
        return EXIT_NOTHING, twin or f"{label}: cannot re-queue it: {exc}"
    except InvalidTransition as exc:
        return EXIT_NOTHING, f"{label}: cannot re-queue it: {exc}"
    where = f"route {route.name}" if route is not None else "the inbox root's options"
    return EXIT_OK, (
        f"{label}: {len(upload_ids)} upload(s) re-queued with {where} (source back in "
        f"{source.parent}); the daemon sends them again and rewrites its results when they "
        "finish"
    )


async def _retake(
    settings: Settings, store: Store, file: FileRecord, label: str, route: Route | None
) -> tuple[int, str]:
    info = dict(file.info)
    archived = Path(
        info.get("archived_path") or settings.paths.rejected / archive_name(file.name, file.id)
    )
    if not await asyncio.to_thread(archived.is_file):
        return EXIT_NOTHING, f"{label}: its source is no longer in {archived.parent}"
    folder = settings.paths.inbox
    if route is not None:
        folder = folder / route.subfolder
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
