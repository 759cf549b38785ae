"""Writing uploads: records split between files, each under the upload limit.

Uploads are UTF-8 CSV without BOM, comma, CRLF, minimal RFC 4180 quoting, header in each,
split only between records so that the whole multipart body stays under the limit.

docs/reference/marketo-api.md §2.1 and §9.4: Marketo refuses a body over 10 MB (HTTP 413);
leadflow keeps the whole multipart body under ``limits.max_upload_bytes``. The body is the file
plus the multipart framing (boundaries, the part's ``Content-Disposition`` and ``Content-Type``
lines and any form fields); ``MULTIPART_OVERHEAD`` bytes are reserved for it, which is several
times what the client sends (about 300 bytes), so an upload file is at most
``max_upload_bytes - MULTIPART_OVERHEAD`` bytes.
"""

from __future__ import annotations

import csv
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from orchestrator.intake.reasons import Unimportable, record_too_large
from orchestrator.settings import MULTIPART_OVERHEAD

#: Write buffer of an upload file (bytes).
WRITE_BUFFER = 1 << 20
#: Uploads of up to this many rows keep their source row numbers in memory; bigger ones
#: write them to a ``.rows`` file next to the upload (memory stays bounded per upload).
MEMORY_ROWS = 4096


class _Sink:
    """A file-like target whose ``write`` is a list's ``append`` (one call per record)."""

    __slots__ = ("write",)

    def __init__(self, write: Callable[[str], object]) -> None:
        self.write = write


@dataclass(frozen=True, slots=True)
class WrittenUpload:
    """One upload on disk.

    Attributes:
        path: the CSV file.
        size_bytes: its size in bytes (header included).
        rows_path: uint32 source line numbers of its rows (native order), one per row; None
            when they are kept in ``lines`` (up to ``MEMORY_ROWS`` rows).
        rows: how many data rows it holds.
        header_bytes: bytes of the header line at the top of the file (CRLF included).
        lines: the source line numbers in memory, or None when in ``rows_path``.
    """

    path: Path
    size_bytes: int
    rows_path: Path | None
    rows: int
    header_bytes: int = 0
    lines: array[int] | None = None

    def source_rows(self) -> array[int]:
        """Return the source line number of each row, in order (read back from disk if spilt)."""
        if self.lines is not None:
            return self.lines
        lines: array[int] = array("I")
        if self.rows_path is not None:
            lines.frombytes(self.rows_path.read_bytes())
        return lines

    def forget_rows_file(self) -> None:
        """Delete the ``.rows`` file once its numbers are in the database (no-op in memory)."""
        if self.rows_path is not None:
            self.rows_path.unlink(missing_ok=True)


def upload_budget(max_upload_bytes: int) -> int:
    """Return the largest upload file (bytes) whose multipart body stays under the limit."""
    return max_upload_bytes - MULTIPART_OVERHEAD


class UploadSplitter:
    """Appends records to ``upload-0001.csv``, ``upload-0002.csv``, ... in ``work_dir``.

    Args:
        work_dir: the file's work folder.
        header: REST API names, written at the top of every upload.
        max_upload_bytes: ``limits.max_upload_bytes`` (the whole multipart body).

    Raises:
        Unimportable: the header alone does not fit in an upload.
    """

    def __init__(self, work_dir: Path, header: list[str], max_upload_bytes: int) -> None:
        self.work_dir = work_dir
        self.budget = upload_budget(max_upload_bytes)
        self.uploads: list[WrittenUpload] = []
        self._buf: list[str] = []
        self._writer = csv.writer(_Sink(self._buf.append), lineterminator="\r\n")
        self._writer.writerow(header)
        self.header_bytes = self._buf.pop().encode("utf-8")
        if len(self.header_bytes) >= self.budget:
            raise Unimportable(
                f"The header alone is {len(self.header_bytes)} bytes, more than one upload "
                f"may hold ({self.budget} bytes)."
            )
        self._out: BinaryIO | None = None
        self._path: Path | None = None
        self._size = 0
        self._lines: array[int] = array("I")

    def add(
        self, rows: list[list[str]], lines: list[int], raw: str | None = None
    ) -> list[tuple[int, list[str], str]]:
        """Write a batch of records (with their source line numbers) in order.

        Args:
            rows: the records.
            lines: the source line on which each starts.
            raw: the records' text exactly as the CSV writer would write it, if known
                (``lines.canonical``): written as it is, which saves writing them again.

        Returns:
            ``(line, record, reason)`` for each record too large for any upload (not written).
        """
        buf = self._buf
        if raw is None:
            self._writer.writerows(rows)
            data = "".join(buf).encode("utf-8")
        else:
            data = raw.encode("utf-8")
        rejected: list[tuple[int, list[str], str]] = []
        if self._out is None and len(self.header_bytes) + len(data) <= self.budget:
            self._open()
        if self._out is not None and self._size + len(data) <= self.budget:
            self._out.write(data)
            self._size += len(data)
            self._lines.extend(lines)
        else:
            if raw is not None:
                self._writer.writerows(rows)
            for text, row, line in zip(buf, rows, lines, strict=True):
                record = text.encode("utf-8")
                if len(self.header_bytes) + len(record) > self.budget:
                    rejected.append((line, row, record_too_large(self.budget)))
                    continue
                if self._out is None or self._size + len(record) > self.budget:
                    self._close_current()
                    self._open()
                assert self._out is not None
                self._out.write(record)
                self._size += len(record)
                self._lines.append(line)
        buf.clear()
        return rejected

    def _open(self) -> None:
        seq = len(self.uploads) + 1
        self._path = self.work_dir / f"upload-{seq:04d}.csv"
        self._out = open(self._path, "wb", buffering=WRITE_BUFFER)  # noqa: SIM115
        self._out.write(self.header_bytes)
        self._size = len(self.header_bytes)
        self._lines = array("I")

    def _close_current(self) -> None:
        if self._out is None or self._path is None:
            return
        self._out.close()
        header = len(self.header_bytes)
        if len(self._lines) <= MEMORY_ROWS:
            written = WrittenUpload(self._path, self._size, None, len(self._lines), header,
                                    self._lines)
        else:
            rows_path = self._path.with_suffix(".rows")
            with open(rows_path, "wb") as out:
                self._lines.tofile(out)
            written = WrittenUpload(self._path, self._size, rows_path, len(self._lines), header)
        self.uploads.append(written)
        self._out = None
        self._path = None
        self._lines = array("I")

    def close(self) -> list[WrittenUpload]:
        """Finish the last upload; return every upload written, in order."""
        self._close_current()
        return self.uploads

    def abort(self) -> None:
        """Close without recording (the caller deletes the work folder's uploads)."""
        if self._out is not None:
            self._out.close()
            self._out = None
