"""Blocking steps of taking a file: the claim (the atomic move) and the first read.

Run in worker threads by ``service``.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from orchestrator.intake.encoding import SourceScan, scan_source
from orchestrator.intake.prepare import Prepared, PrepareSpec, max_line_bytes, prepare_file
from orchestrator.intake.reasons import Unimportable
from orchestrator.places import move, work_dir_of_source

log = structlog.get_logger(__name__)

#: Files up to this size (bytes) are prepared before the duplicate check, in one thread hop.
EAGER_PREPARE_BYTES = 1 << 20


def scan_and_prepare_small(source: Path, spec: PrepareSpec) -> tuple[SourceScan, Prepared | None]:
    """Scan the source; prepare it at once when it is small (one thread hop instead of two).

    A large file is prepared only after the duplicate check, so a repeated 1 GB file is not
    prepared for nothing; for a small one the wasted work is negligible.

    Raises:
        Unimportable: with ``scan`` attached when the scan succeeded.
    """
    scan = scan_source(source, max_line_bytes(spec.max_upload_bytes))
    if scan.size_bytes > EAGER_PREPARE_BYTES:
        return scan, None
    try:
        return scan, prepare_file(source, work_dir_of_source(source), scan, spec)
    except Unimportable as exc:
        exc.scan = scan  # type: ignore[attr-defined]
        raise


def claim(source: Path, target: Path) -> None:
    """Move ``source`` from the inbox to ``target`` in work (``places.move``: atomic).

    Raises:
        FileNotFoundError: the source vanished.
        OSError: anything else.
    """
    if move(source, target):
        log.info("file_claimed_by_copy", source=str(source), target=str(target))
