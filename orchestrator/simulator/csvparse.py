"""Upload bodies: multipart/form-data splitting, strict UTF-8 decoding, RFC 4180 records.

docs/reference/marketo-api.md §8.4 and §8.5: the body is split without buffering more than the limit
(the caller enforces it), the file part is decoded strictly as UTF-8 (a BOM is kept as part of the
first header name) and parsed with the format's delimiter; completely blank lines are skipped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

from orchestrator.simulator import errors
from orchestrator.simulator.errors import ApiError

#: Delimiter of each ``format`` value (lower-cased; the parameter is case-insensitive).
DELIMITERS = {"csv": ",", "tsv": "\t", "ssv": ";"}


@dataclass(frozen=True, slots=True)
class Part:
    """One multipart part: its name, optional filename and raw bytes."""

    name: str
    filename: str | None
    data: bytes


def parse_header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``type/sub; a=b; c="d"`` into the lower-cased main value and its parameters."""
    main, *rest = value.split(";")
    params: dict[str, str] = {}
    for item in rest:
        key, sep, val = item.strip().partition("=")
        if not sep:
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1].replace('\\"', '"')
        params[key.strip().lower()] = val
    return main.strip().lower(), params


def parse_multipart(body: bytes, content_type: str) -> dict[str, Part]:
    """Split a ``multipart/form-data`` body into its parts, keyed by part name.

    Args:
        body: The whole request body, already size-checked.
        content_type: The request's ``Content-Type`` header.

    Returns:
        Parts by name; a repeated name keeps the first part.

    Raises:
        ApiError: 612 when the content type is not multipart/form-data; 613 when the boundary
            is missing or the body is not well-formed.
    """
    mime, params = parse_header_params(content_type)
    if mime != "multipart/form-data":
        raise ApiError.of(errors.INVALID_CONTENT_TYPE)
    boundary = params.get("boundary")
    if not boundary:
        raise ApiError.of(errors.INVALID_MULTIPART)
    delim = b"--" + boundary.encode("latin-1")
    start = body.find(delim)
    if start < 0:
        raise ApiError.of(errors.INVALID_MULTIPART)
    pos = start + len(delim)
    parts: dict[str, Part] = {}
    sep = b"\r\n" + delim
    while True:
        if body.startswith(b"--", pos):
            return parts
        if not body.startswith(b"\r\n", pos):
            raise ApiError.of(errors.INVALID_MULTIPART)
        pos += 2
        if body.startswith(b"\r\n", pos):
            head_end, raw_headers = pos, b""
        else:
            head_end = body.find(b"\r\n\r\n", pos)
            if head_end < 0:
                raise ApiError.of(errors.INVALID_MULTIPART)
            raw_headers = body[pos:head_end]
            head_end += 2
        content_start = head_end + 2
        end = body.find(sep, content_start)
        if end < 0:
            raise ApiError.of(errors.INVALID_MULTIPART)
        name, filename = _disposition(raw_headers)
        if name is not None and name not in parts:
            parts[name] = Part(name, filename, body[content_start:end])
        pos = end + len(sep)


def _disposition(raw_headers: bytes) -> tuple[str | None, str | None]:
    for line in raw_headers.decode("utf-8", "replace").split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            _, params = parse_header_params(value)
            return params.get("name"), params.get("filename")
    return None, None


def decode_strict(data: bytes) -> str:
    """Decode an uploaded file as UTF-8 without stripping a BOM.

    Raises:
        ApiError: 1003 ``Invalid file encoding`` on bytes that are not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError.of(errors.INVALID_ENCODING) from None


def iter_records(text: str, delimiter: str) -> Iterator[list[str]]:
    """Yield RFC 4180 records of ``text``, skipping completely blank lines.

    Double quotes, ``""`` escapes and quoted delimiters/line breaks are honoured; CRLF and LF
    both end a record.
    """
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        strict=False,
    )
    for row in reader:
        if row:
            yield row


def render_report(
    header: list[str],
    rows: list[tuple[list[str], str]],
    delimiter: str,
    reason_header: str,
) -> str:
    """Render a failures or warnings file (docs/reference/marketo-api.md §3.2, §8.6).

    Each row is padded or cut to the header's width and followed by its reason. When the last
    column is empty in every reported row, that column is dropped from the header and the rows
    (the quirk observed by BLOG-teknkl).

    Args:
        header: The upload's header.
        rows: ``(original fields, reason)`` in file order.
        delimiter: The upload's delimiter.
        reason_header: ``Import Failure Reason`` or ``Import Warning Reason``.

    Returns:
        The file text, LF line endings, RFC 4180 quoting where needed.
    """
    width = len(header)
    fixed = [((fields + [""] * (width - len(fields)))[:width], reason) for fields, reason in rows]
    if width and all(fields[-1] == "" for fields, _ in fixed):
        width -= 1
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow([*header[:width], reason_header])
    writer.writerows([*fields[:width], reason] for fields, reason in fixed)
    return buf.getvalue()
