"""Prepared uploads for the scheduling benchmarks: UTF-8 CSV, CRLF, header of REST names.

The scheduling benchmarks start from uploads already prepared (what intake leaves in
``paths.work``), so that the makespan measures the scheduler, the client and the poller;
preparation has its own benchmark (``bench_prepare``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HEADER = "email,firstName,lastName,company,leadScore"
#: Leave room for the multipart envelope under ``limits.max_upload_bytes`` (9,500,000).
MAX_PAYLOAD_BYTES = 9_400_000


@dataclass(frozen=True, slots=True)
class Upload:
    """One prepared upload file.

    Attributes:
        path: the CSV on disk.
        rows: data rows (import work = rows / the simulator's rows_per_second).
        size_bytes: file size.
        group: index of the source file it belongs to.
    """

    path: Path
    rows: int
    size_bytes: int
    group: int


def _row(i: int) -> str:
    return f"lead{i:08d}@example.com,First{i % 997},Last{i % 991},Company {i % 1009},{i % 100}"


def small_uploads(folder: Path, count: int, rows: int) -> list[Upload]:
    """Write ``count`` uploads of ``rows`` rows each (one source file each)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    n = 0
    for f in range(count):
        path = folder / f"small-{f:04d}.csv"
        lines = [HEADER]
        for _ in range(rows):
            lines.append(_row(n))
            n += 1
        data = ("\r\n".join(lines) + "\r\n").encode()
        path.write_bytes(data)
        out.append(Upload(path, rows, len(data), f))
    return out


def big_uploads(folder: Path, files: int, file_bytes: int) -> list[Upload]:
    """Write ``files`` sources of about ``file_bytes`` each, already split into uploads.

    Each source is cut at record boundaries into ``ceil(file_bytes / MAX_PAYLOAD_BYTES)``
    uploads of equal size, with the header repeated (a balanced split: no small last upload
    left to run alone on one slot).
    """
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Upload] = []
    n = 0
    header = (HEADER + "\r\n").encode()
    parts = -(-file_bytes // MAX_PAYLOAD_BYTES)
    per_part = file_bytes // parts
    for f in range(files):
        for seq in range(1, parts + 1):
            path = folder / f"big-{f:02d}-{seq:04d}.csv"
            chunks = [header]
            size = len(header)
            rows = 0
            while size < per_part:
                line = (_row(n) + "\r\n").encode()
                n += 1
                chunks.append(line)
                size += len(line)
                rows += 1
            path.write_bytes(b"".join(chunks))
            out.append(Upload(path, rows, size, f))
    return out
