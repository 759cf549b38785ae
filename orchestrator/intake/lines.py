r"""Source lines for the CSV parser, and the raw text of records that need no rewriting.

``LineFeed`` decodes the source in 256 KiB chunks and hands ``csv.reader`` the same lines a
text file opened with ``newline=""`` would (split after ``\r\n``, ``\r`` or ``\n``, line
breaks kept), so parsing and line numbers are unchanged. It keeps the lines of the records
being processed, so that ``text(a, b)`` returns the exact source text of lines ``a`` to ``b``.

``canonical`` tells whether such text is exactly what ``csv.writer`` (comma, ``"``, CRLF,
minimal quoting) would write for the records ``csv.reader`` parses from it: a field is quoted
only when it holds a comma, a quote or a line break, quotes are doubled, every record ends in
CRLF. Text that is canonical is written to the upload as it is (speed only: the bytes are the
same as the writer's); any other text goes through ``csv.writer``.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from itertools import chain
from typing import BinaryIO

#: Bytes decoded at a time (bytes): small enough for the lines to stay in the CPU cache.
CHUNK_BYTES = 1 << 18

#: One line as a text file with ``newline=""`` reads it.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")

#: A quoted value holding a comma, a line break or a doubled quote (possessive: faster).
_QUOTED = r'"[^",\r\n]*+(?:""|[,\r\n])[^"]*+(?:""[^"]*+)*+"'
_FIELD = rf'(?:{_QUOTED}|[^,"\r\n]*+)'
#: Records exactly as ``csv.writer(lineterminator="\r\n")`` writes them.
_CANONICAL = re.compile(rf"(?:{_FIELD}(?:,{_FIELD})*+\r\n)*+")


def split_lines(text: str) -> list[str]:
    """Split ``text`` where a text file opened with ``newline=""`` ends its lines."""
    lines = text.splitlines(keepends=True)
    # splitlines breaks at least where the file would (CRLF, CR, LF: at least max(LFs, CRs)
    # breaks); when it made no more breaks than that, it made exactly the same ones.
    breaks = max(text.count("\n"), text.count("\r"))
    if len(lines) == breaks + (not text.endswith(("\n", "\r"))):
        return lines
    return _LINE.findall(text)


class LineFeed:
    """Decoded lines of a binary source, iterable once, with the text of recent lines.

    Args:
        source: the file, opened in binary mode at its start.
        codec: Python codec (strict); a decoding error raises ``UnicodeDecodeError`` from
            the iteration.

    Lines are numbered from 0 in the order they are handed out.
    """

    def __init__(self, source: BinaryIO, codec: str) -> None:
        self._source = source
        self._decoder = codecs.getincrementaldecoder(codec)("strict")
        self._chunks: list[tuple[int, list[str]]] = []  # (number of first line, lines)
        self._next = 0  # number of the first line of the next chunk
        self._iter = chain.from_iterable(self._read())

    def __iter__(self) -> Iterator[str]:
        return self._iter

    def readline(self) -> str:
        """Return the next line, or ``""`` at the end (like ``TextIO.readline``)."""
        return next(self._iter, "")

    def _read(self) -> Iterator[list[str]]:
        carry = ""
        while True:
            data = self._source.read(CHUNK_BYTES)
            final = not data
            text = carry + self._decoder.decode(data, final)
            lines = split_lines(text)
            carry = ""
            if not final and lines and not lines[-1].endswith("\n"):
                carry = lines.pop()  # unfinished, or a CR that a LF may follow
            if lines:
                self._chunks.append((self._next, lines))
                self._next += len(lines)
                yield lines
            if final:
                return

    def text(self, start: int, end: int) -> str:
        """Return lines ``start`` to ``end`` (excluded) joined; forget lines before ``start``.

        Only lines already handed out and not yet forgotten can be asked for.
        """
        self.forget(start)
        parts: list[str] = []
        for first, lines in self._chunks:
            if first >= end:
                break
            parts.extend(lines[max(start - first, 0) : end - first])
        return "".join(parts)

    def forget(self, start: int) -> None:
        """Drop kept chunks that hold only lines before ``start``."""
        chunks = self._chunks
        while len(chunks) > 1 and chunks[1][0] <= start:
            del chunks[0]


def canonical(text: str) -> bool:
    """Return whether ``text`` is records exactly as the upload's ``csv.writer`` writes them."""
    return _ENABLED and _CANONICAL.fullmatch(text) is not None


def _self_check() -> bool:
    """Check, once, that this Python's ``csv`` writes canonical samples back unchanged."""
    text = 'a,"b,c","d ""e""",,"f\r\ng",h\r\n x , y ,"\nz",#,\u2028,"""",\'\r\n'
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(csv.reader(io.StringIO(text, newline="")))
    bad = '"1\r2",\t,"3\n",é,"",-\r\n'  # "" is an empty value the writer leaves unquoted
    return (
        out.getvalue() == text
        and _CANONICAL.fullmatch(text) is not None
        and _CANONICAL.fullmatch(bad) is None
    )


_ENABLED = _self_check()
