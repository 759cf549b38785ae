"""Blocking steps of taking a file: the claim (the atomic move) and the first read.

Run in worker threads by ``service``: one file at a time (``claim``, ``scan_and_prepare_small``)
or a batch of small files in one call (``claim_and_prepare``), which saves a thread hop and an
event-loop round trip per file when the inbox holds thousands of them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One file of a batch to claim and prepare.

    Attributes:
        source: where the file is in the inbox.
        target: its claimed path ``work/<file id>/source/<name>``.
        file_id: its id (log lines of the preparation carry it).
        spec: how to prepare it; None to claim it only (it waits for the field catalogue,
            or is rejected by the caller).
    """

    source: Path
    target: Path
    file_id: int
    spec: PrepareSpec | None


@dataclass(slots=True)
class BatchOutcome:
    """What happened to one file of a batch; exactly one of the fields tells.

    Attributes:
        claimed: the file was moved into work (False: ``error`` says why it was not).
        error: ``FileNotFoundError`` (vanished) or another ``OSError`` (cannot be moved) of
            the claim, or of reading it.
        scan: the scan of a prepared (or refused) file.
        prepared: the preparation, or None when the file is too big to prepare eagerly or
            was only claimed.
        refused: why it cannot be imported.
        crash: an unexpected exception of the preparation (a bug; the file is rejected).
        seconds: wall seconds its scan and preparation took.
    """

    claimed: bool = False
    error: OSError | None = None
    scan: SourceScan | None = None
    prepared: Prepared | None = None
    refused: Unimportable | None = None
    crash: Exception | None = None
    seconds: float = 0.0


def claim_and_prepare(items: Sequence[BatchItem]) -> list[BatchOutcome]:
    """Claim each file and prepare it when it has a spec (blocking; one worker-thread call).

    Never raises: each file's fate is in its outcome, in the order of ``items``.
    """
    outcomes: list[BatchOutcome] = []
    for item in items:
        outcome = BatchOutcome()
        outcomes.append(outcome)
        try:
            claim(item.source, item.target)
        except OSError as exc:
            outcome.error = exc
            continue
        outcome.claimed = True
        if item.spec is None:
            continue
        with structlog.contextvars.bound_contextvars(file_id=item.file_id,
                                                     file=item.target.name):
            began = time.perf_counter()
            try:
                outcome.scan, outcome.prepared = scan_and_prepare_small(item.target, item.spec)
            except Unimportable as exc:
                outcome.refused = exc
                outcome.scan = getattr(exc, "scan", None)
            except OSError as exc:
                outcome.error = exc
            except Exception as exc:  # one bad file must not stop the batch
                log.exception("prepare_crashed", file_id=item.file_id, file=item.target.name)
                outcome.crash = exc
            outcome.seconds = time.perf_counter() - began
    return outcomes
