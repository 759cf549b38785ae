"""``leadflow migrate --copy-from PATH``: move an SQLite deployment's database into PostgreSQL.

The work is ``orchestrator.store.copy.copy_into_postgresql``: both databases are migrated to the
current schema, then every table that carries history and state is copied, in one PostgreSQL
transaction, into the EMPTY database of ``store.url``. Nothing is written when it refuses.

Exit codes: 0 copied; 1 refused because of the databases' state (a daemon runs on the source,
nodes run on the target, the target already holds data or stayed locked) or a runtime error (the
server cannot be reached, a database is newer than this leadflow); 2 ``store.url`` is not set,
the source is missing or not a leadflow database, or files still open in it belong to a Marketo
instance the settings do not name.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.commands.output import EXIT_NOTHING, EXIT_OK, EXIT_USAGE, print_err, print_out
from orchestrator.errors import CopyRefused
from orchestrator.settings import Settings
from orchestrator.store.copy import copy_into_postgresql

#: A node whose heartbeat is younger than this many ``daemon.lease_s`` runs on the target
#: (as ``leadflow status`` counts running nodes).
NODE_ALIVE_LEASES = 3.0


async def copy_from_command(settings: Settings, source: Path) -> int:
    """Copy the SQLite database at ``source`` into the PostgreSQL database of ``store.url``.

    Returns:
        0 when copied (prints what, and how many rows of each table), 1 or 2 when refused
        (prints one line; see the module docstring).
    """
    if settings.store.url is None:
        print_err(
            "leadflow: --copy-from copies into the PostgreSQL database of store.url, which is "
            "not set (this store is SQLite at paths.database): set store.url (or "
            "LEADFLOW_STORE__URL) to the new, empty database"
        )
        return EXIT_USAGE
    try:
        result = await copy_into_postgresql(
            source,
            settings.store.url,
            instances=settings.instance_names(),
            node_alive_s=NODE_ALIVE_LEASES * settings.daemon.lease_s,
        )
    except CopyRefused as exc:
        print_err(f"leadflow: {exc}")
        return EXIT_USAGE if exc.usage else EXIT_NOTHING
    rows = ", ".join(f"{table} {count}" for table, count in result.rows.items())
    print_out(f"copied {result.source} into {result.target} in {result.seconds:.1f}s: {rows}")
    print_out(
        f"{result.source} is left as it was (migrated to the current schema); start the nodes "
        "with this store.url, and no daemon on the SQLite file again"
    )
    return EXIT_OK
