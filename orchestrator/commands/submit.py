"""``leadflow submit FILE [--route NAME]``: copy a file into the inbox for the daemon.

The file is copied atomically into the inbox (or the route's folder) with
``places.drop_into``: under a hidden ``.<name>.<pid>.part`` name first, then hard-linked to
its final name, which never replaces an existing file (``name-2.csv`` is used instead). The
watcher therefore never sees a half-copied file. It needs no running daemon.

Exit codes: 0 done, 1 the copy failed, 2 bad usage (unknown route, missing file, a name the
daemon ignores).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from orchestrator.commands.output import EXIT_NOTHING, EXIT_OK, EXIT_USAGE, print_err, print_out
from orchestrator.intake.watcher import is_ignored_name
from orchestrator.places import drop_into, route_folder
from orchestrator.settings import Settings


async def submit_command(settings: Settings, file: Path, route: str | None) -> int:
    """Copy ``file`` into the inbox (the route's subfolder with ``route``) for the daemon.

    Returns:
        0 when copied (prints where), 2 when the file is missing, its name is one intake
        ignores (``is_ignored_name``) or the route unknown, 1 when the copy failed (folder
        not writable, disk full).
    """
    source = await asyncio.to_thread(file.expanduser)
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
        found = next((r for r in settings.routes if r.name == route), None)
        if found is None:
            known = ", ".join(r.name for r in settings.routes) or "none configured"
            print_err(f"leadflow: unknown route {route!r} (known routes: {known})")
            return EXIT_USAGE
    folder = route_folder(settings.paths.inbox, found)
    try:
        dest = await asyncio.to_thread(drop_into, source, folder, source.name, move=False)
    except OSError as exc:
        print_err(f"leadflow: cannot copy {source} into {folder}: {exc.strerror or exc}")
        return EXIT_NOTHING
    where = f" (route {route})" if route else ""
    print_out(f"submitted {source} as {dest}{where}; the daemon takes it from there")
    return EXIT_OK
