"""``leadflow submit FILE [--route NAME]``: copy a file into the inbox for the daemon.

The file is copied atomically into the inbox (or the route's folder) with
``places.drop_into``: under a hidden ``.<name>.<pid>.part`` name first, then hard-linked to
its final name, which never replaces an existing file (``name-2.csv`` is used instead). The
watcher therefore never sees a half-copied file. It needs no running daemon.

Exit codes: 0 done, 1 the copy failed, 2 bad usage (unknown route, a route the running daemon
does not know yet, missing file, a name the daemon ignores).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from orchestrator.commands.output import EXIT_NOTHING, EXIT_OK, EXIT_USAGE, print_err, print_out
from orchestrator.commands.routes import routes_in_force
from orchestrator.intake.watcher import is_ignored_name
from orchestrator.places import drop_into, forced_name, is_forced_name, route_folder
from orchestrator.settings import Settings


async def submit_command(
    settings: Settings, file: Path, route: str | None, *, force: bool = False
) -> int:
    """Copy ``file`` into the inbox (the route's subfolder with ``route``) for the daemon.

    With ``route``, the route must be one the running daemon knows (``routes_in_force``).
    With ``force`` the copy is named with ``.force`` before its extension
    (``places.forced_name``), so the daemon imports it even if the same bytes were imported
    before with the same options, and its report says which file it repeats.

    Returns:
        0 when copied (prints where), 2 when the file is missing, its name is one intake
        ignores (``is_ignored_name``) or the route unknown, 1 when the copy failed (folder
        not writable, disk full).
    """
    try:
        source = await asyncio.to_thread(file.expanduser)
    except RuntimeError:  # '~backup.csv', '~$x.csv': no such user, so a plain file name
        source = file
    if not await asyncio.to_thread(source.is_file):
        print_err(f"leadflow: {source} is not a readable file")
        return EXIT_USAGE
    if is_ignored_name(source.name):
        print_err(
            f"leadflow: the daemon ignores files named like {source.name!r} (a leading '.' or "
            "'~$', or ending in .tmp or .part): rename it and submit it again"
        )
        return EXIT_USAGE
    found = None
    if route is not None:
        routes = await routes_in_force(settings)
        found = routes.find(route)
        refusal = routes.refuse(route, settings)
        if refusal is not None:
            print_err(refusal)
            return EXIT_USAGE
        if found is None:
            print_err(f"leadflow: unknown route {route!r} ({routes.whose()}: {routes.known()})")
            return EXIT_USAGE
        written = next((r for r in settings.routes if r.name == route), None)
        if written is not None and written != found:
            print_err(
                f"leadflow: note: the running daemon imports route {route!r} with its settings "
                "from when it started (the settings file differs now): reload it to use the "
                "file's"
            )
    folder = route_folder(settings.paths.inbox, found)
    name = forced_name(source.name) if force else source.name
    try:
        dest = await asyncio.to_thread(drop_into, source, folder, name, move=False)
    except OSError as exc:
        print_err(f"leadflow: cannot copy {source} into {folder}: {exc.strerror or exc}")
        return EXIT_NOTHING
    notes = [f"route {route}"] if route else []
    if force or is_forced_name(name):
        notes.append(
            "forced: imported even if the same bytes were imported before with the same options"
        )
    where = f" ({', '.join(notes)})" if notes else ""
    print_out(f"submitted {source} as {dest}{where}; the daemon takes it from there")
    return EXIT_OK
