"""Blocking steps of taking a file: the claim (atomic rename) and the first read.

Run in worker threads by ``service``.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import structlog

from orchestrator.intake.encoding import SourceScan, scan_source
from orchestrator.intake.prepare import Prepared, PrepareSpec, max_line_bytes, prepare_file
from orchestrator.intake.reasons import Unimportable

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
        return scan, prepare_file(source, source.parent.parent, scan, spec)
    except Unimportable as exc:
        exc.scan = scan  # type: ignore[attr-defined]
        raise


def claim(source: Path, target: Path) -> None:
    """Atomically rename ``source`` to ``target``; across file systems, copy then unlink.

    Raises:
        FileNotFoundError: the source vanished.
        OSError: anything else.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        partial = target.with_name(f".{target.name}.claiming")
        shutil.copy2(source, partial)
        os.rename(partial, target)
        os.unlink(source)
        log.info("file_claimed_by_copy", source=str(source), target=str(target))
