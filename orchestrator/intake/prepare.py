"""Preparation: one source file -> clean uploads, local rejections and counts (streaming).

Runs in a worker thread (blocking I/O). Memory is bounded whatever the file size: records
stream from the decoder through ``csv`` into the upload files; row numbers go to disk per
upload; duplicate lookup values spill to disk past a limit (``duplicates``).

Row rules are in ``rows``. Values pass through unchanged. A row's number is the 1-based line
on which its record starts (the header is line 1).
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import structlog

from orchestrator.intake.duplicates import DuplicateCounter, partitions_for
from orchestrator.intake.encoding import CHUNK_BYTES, SourceScan, guess_encoding, utf8_damage
from orchestrator.intake.fields import Catalogue
from orchestrator.intake.header import HeaderMap, map_header
from orchestrator.intake.lines import LineFeed, canonical
from orchestrator.intake.quirks import TrimmedReader, header_for_upload, sep_hint, trim_header
from orchestrator.intake.reasons import Unimportable, empty
from orchestrator.intake.rows import RowRules, read_batch
from orchestrator.intake.sniff import sniff_delimiter, split_header
from orchestrator.intake.split import UploadSplitter, WrittenUpload, upload_budget
from orchestrator.intake.validate import typed_columns
from orchestrator.models import FORMAT_OF_DELIMITER
from orchestrator.places import REJECTIONS_NAME, SOURCE_FOLDER

log = structlog.get_logger(__name__)

#: Records handed to the splitter at once.
BATCH_ROWS = 512
#: Clean batches in a row whose source text is not canonical (``lines.canonical``) after
#: which the file is assumed to be written in another style and its text no longer checked.
RAW_MISSES = 8
#: Header of the reason column of ``rejections.csv`` (as in Marketo's failures files).
REASON_COLUMN = "Import Failure Reason"


@dataclass(frozen=True, slots=True)
class PrepareSpec:
    """What preparation needs besides the file.

    Attributes:
        catalogue: the describe catalogue, or None to keep the header as is (custom objects).
        lookup_field: REST name of the lookup column.
        max_upload_bytes: ``limits.max_upload_bytes``.
        null_tokens: lookup values that count as empty (compared after trimming).
        allow_encoding_guess: ``intake.allow_encoding_guess``.
        encoding: ``intake.encoding`` (None: guess).
    """

    catalogue: Catalogue | None
    lookup_field: str
    max_upload_bytes: int
    null_tokens: Collection[str] = ()
    allow_encoding_guess: bool = True
    encoding: str | None = None


@dataclass(slots=True)
class Prepared:
    """The outcome of preparing one file that had at least one data record."""

    uploads: list[WrittenUpload]
    encoding: str
    delimiter: str
    header: HeaderMap
    rows_total: int
    rows_rejected: int
    duplicates: int
    duplicate_list: list[dict[str, object]]
    rejections_path: Path | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def format(self) -> str:
        """The *source* delimiter as Marketo names it: ``csv``, ``tsv`` or ``ssv``."""
        return FORMAT_OF_DELIMITER[self.delimiter]


def max_line_bytes(max_upload_bytes: int) -> int:
    """Longest physical line accepted in a source file (bytes); see ``scan_source``."""
    return max(upload_budget(max_upload_bytes), CHUNK_BYTES)


def clean_work_dir(work_dir: Path) -> None:
    """Delete prepared outputs (uploads, row files, rejections, spill) but not ``source/``."""
    if not work_dir.is_dir():
        return
    for entry in os.scandir(work_dir):
        if entry.name == SOURCE_FOLDER:
            continue
        if entry.is_dir(follow_symlinks=False):
            for inner in os.scandir(entry.path):
                os.unlink(inner.path)
            os.rmdir(entry.path)
        else:
            os.unlink(entry.path)


def prepare_file(source: Path, work_dir: Path, scan: SourceScan, spec: PrepareSpec) -> Prepared:
    """Turn ``source`` into uploads in ``work_dir`` (blocking; run it in a thread).

    Args:
        source: the claimed source file.
        work_dir: the file's work folder (outputs are written next to ``source/``).
        scan: the result of ``scan_source`` (codec from a BOM, or UTF-8 to be checked).
        spec: catalogue, lookup field, limits and null tokens.

    Returns:
        The uploads and counts; ``uploads`` is empty when every record was rejected.

    Raises:
        Unimportable: the file cannot be imported at all (``empty`` or ``rejected``).
        OSError: the file vanished or cannot be read.
    """
    csv.field_size_limit(max(csv.field_size_limit(), upload_budget(spec.max_upload_bytes) + 1))
    codec, label = scan.codec, scan.encoding
    try:
        return _prepare(source, work_dir, codec, label, spec)
    except UnicodeDecodeError as exc:
        clean_work_dir(work_dir)
        if codec != "utf-8":
            raise Unimportable(
                f"The file starts with a {label} byte order mark but is not valid {label}."
            ) from exc
    damage = utf8_damage(source)
    offset = damage.first_bad
    if damage.damaged:
        noun = "sequence is" if damage.bad == 1 else "sequences are"
        raise Unimportable(
            f"The file is UTF-8 but {damage.bad} byte {noun} not (first at offset {offset}): "
            "it looks damaged; fix those bytes or save it as UTF-8 again."
        )
    codec, label = guess_encoding(
        source, offset, allow_guess=spec.allow_encoding_guess, forced=spec.encoding
    )
    log.info("encoding_guessed", encoding=label, first_bad_byte=offset, forced=bool(spec.encoding))
    try:
        return _prepare(source, work_dir, codec, label, spec)
    except UnicodeDecodeError as exc:
        clean_work_dir(work_dir)
        raise Unimportable(
            f"The file is neither UTF-8 nor {label} "
            f"({'intake.encoding' if spec.encoding else 'the guessed encoding'}); save it as UTF-8."
        ) from exc


def _read_header(text: LineFeed) -> tuple[str, int]:
    """Return the first non-blank record's text (without its line break) and its last line."""
    line_no = 0
    while True:
        line = text.readline()
        if not line:
            raise empty("The file holds only blank lines: no header and no data rows.")
        line_no += 1
        if line.strip():
            break
    while line.count('"') % 2:  # a quoted line break inside the header
        more = text.readline()
        if not more:
            break
        line += more
        line_no += 1
    return line.rstrip("\r\n"), line_no


def scan_size(source: Path) -> int:
    """Size of the source in bytes (0 if it cannot be read: the open below then fails)."""
    try:
        return source.stat().st_size
    except OSError:
        return 0


def _prepare(source: Path, work_dir: Path, codec: str, label: str, spec: PrepareSpec) -> Prepared:
    size_bytes = scan_size(source)
    catalogue = spec.catalogue
    with open(source, "rb") as binary:
        text = LineFeed(binary, codec)
        header_line, header_end = _read_header(text)
        hinted = sep_hint(header_line)  # Excel's "sep=;" line
        if hinted is not None:
            header_line, more = _read_header(text)
            header_end += more

        def all_known(columns: list[str]) -> bool:
            columns = trim_header(columns)[0]
            return catalogue is None or all(catalogue.resolve(c) for c in columns)

        delimiter = hinted or sniff_delimiter(header_line, all_known)
        columns, trim = header_for_upload(split_header(header_line, delimiter))
        hmap = map_header(columns, catalogue, spec.lookup_field)
        lookup_field = hmap.fields[hmap.lookup_index]
        fold = spec.lookup_field == "email" or (
            lookup_field is not None and lookup_field.data_type.lower() == "email"
        )
        splitter = UploadSplitter(work_dir, hmap.names, spec.max_upload_bytes)
        rejections = _Rejections(work_dir / REJECTIONS_NAME, hmap.names)
        dups = DuplicateCounter(work_dir / "dups", partitions_for(size_bytes))
        reader: Any = csv.reader(text, delimiter=delimiter)
        if trim is not None:
            reader = TrimmedReader(reader, trim, header_end)
        try:
            total = _rows(
                reader,
                text if delimiter == "," and trim is None else None,
                header_end,
                hmap,
                spec,
                fold,
                splitter,
                rejections,
                dups,
            )
        except BaseException:
            splitter.abort()
            rejections.close()
            with contextlib.suppress(OSError):
                clean_work_dir(work_dir)
            raise
    uploads = splitter.close()
    rejections.close()
    if total == 0:
        clean_work_dir(work_dir)
        raise empty("The file has a header but no data rows.")
    repeats, listed = dups.finish(lambda rows: _values_at(uploads, hmap.lookup_index, rows, fold))
    return Prepared(
        uploads=uploads,
        encoding=label,
        delimiter=delimiter,
        header=hmap,
        rows_total=total,
        rows_rejected=rejections.count,
        duplicates=repeats,
        duplicate_list=listed,
        rejections_path=rejections.path if rejections.count else None,
    )


def _rows(
    reader: Any,
    feed: LineFeed | None,
    header_end: int,
    hmap: HeaderMap,
    spec: PrepareSpec,
    fold: bool,
    splitter: UploadSplitter,
    rejections: _Rejections,
    dups: DuplicateCounter,
) -> int:
    """Read records in batches, classify them, write the good ones. Returns data records.

    ``feed`` (comma-separated sources only) gives the source text of a batch whose every
    record is accepted; when that text is already what the writer would write, it is
    written as it is (speed only: the bytes are the same). After ``RAW_MISSES`` clean
    batches in a row that are not, the text is no longer checked.
    """
    width = len(hmap.names)

    def reject(line: int, row: list[str], reason: str) -> None:
        rejections.add(line, row, width, reason)

    rules = RowRules(
        width=width,
        lookup=hmap.lookup_index,
        lookup_field=spec.lookup_field,
        null_tokens=list(spec.null_tokens),
        typed=typed_columns(hmap.fields),
        fold=fold,
        dups=dups,
        reject=reject,
    )
    start = header_end + 1
    misses = 0  # clean batches in a row whose text was not canonical
    while True:
        first = start - 1  # lines are numbered from 0 in the feed, from 1 in reports
        batch, starts, start = read_batch(reader, start, header_end + 1, BATCH_ROWS)
        if not batch:
            return rules.total
        good, lines = rules.batch(batch, starts)
        raw = None
        if feed is not None:
            if good is batch and misses < RAW_MISSES:
                raw = feed.text(first, start - 1)
                if canonical(raw):
                    misses = 0
                else:
                    raw = None
                    misses += 1
            else:
                feed.forget(start - 1)
        if good:
            for line, record, why in splitter.add(good, list(lines), raw):
                reject(line, record, why)
        dups.checkpoint()


def _values_at(
    uploads: Iterable[WrittenUpload], lookup: int, wanted: set[int], fold: bool
) -> Iterator[tuple[int, str]]:
    """Yield ``(source row, lookup value)`` for the wanted rows, reading the uploads back."""
    left = set(wanted)
    for upload in uploads:
        if not left:
            return
        with open(upload.path, encoding="utf-8", newline="") as text:
            reader = csv.reader(text)
            next(reader, None)
            for row, line in zip(reader, upload.source_rows(), strict=False):
                if line in left:
                    left.discard(line)
                    value = row[lookup].strip()
                    yield line, value.lower() if fold else value


class _Rejections:
    """``rejections.csv``: ``sourceRow``, the REST names, ``Import Failure Reason``."""

    def __init__(self, path: Path, names: list[str]) -> None:
        self.path = path
        self.names = names
        self.count = 0
        self._file: TextIO | None = None
        self._writer: Any = None

    def add(self, line: int, row: list[str], width: int, reason: str) -> None:
        if self._file is None:
            self._file = open(self.path, "w", encoding="utf-8", newline="")  # noqa: SIM115
            self._writer = csv.writer(self._file, lineterminator="\r\n")
            self._writer.writerow(["sourceRow", *self.names, REASON_COLUMN])
        padded = row + [""] * (width - len(row)) if len(row) < width else row
        self._writer.writerow([line, *padded, reason])
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
