"""Source bytes: SHA-256, binary detection, byte order marks and encoding guesses.

Order (issue 5): a byte order mark (UTF-8, UTF-16LE/BE) decides; otherwise the file must be
strict UTF-8, which ``prepare`` checks while it decodes (no extra pass); if it is not, the
encoding is guessed with ``charset-normalizer`` from a bounded sample, unless
``intake.allow_encoding_guess`` is false. Contract section 7: uploads are UTF-8 without BOM.
"""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass
from pathlib import Path

from charset_normalizer import from_bytes

from orchestrator.intake.reasons import Unimportable, empty

#: Bytes read per chunk when hashing (bytes).
CHUNK_BYTES = 1 << 20
#: Bytes from the start of the file, and around the first bad byte, given to the guesser.
SAMPLE_BYTES = 256 * 1024

_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (b"\xef\xbb\xbf", "utf-8-sig", "utf-8-sig"),
    (b"\xff\xfe", "utf-16", "utf-16-le"),
    (b"\xfe\xff", "utf-16", "utf-16-be"),
)
#: DOS and old Mac code pages: on short Latin samples the guesser may rank one of them first,
#: though CSV files from Windows are far more often in a Windows code page.
_LEGACY = ("cp437", "cp775", "cp850", "cp852", "cp857", "cp858", "mac_")
#: Windows-1252: what Excel writes on Western Windows.
_CP1252 = "cp1252"


@dataclass(frozen=True, slots=True)
class SourceScan:
    """What one pass over the source bytes found.

    Attributes:
        sha256: hex digest of the whole file.
        size_bytes: bytes read.
        codec: Python codec to read the text with (``utf-8``, ``utf-8-sig``, ``utf-16``).
        encoding: the encoding to record and report (``utf-8``, ``utf-8-sig``, ``utf-16-le``).
    """

    sha256: str
    size_bytes: int
    codec: str
    encoding: str


def scan_source(path: Path, max_line_bytes: int | None = None) -> SourceScan:
    """Hash the file and decide its codec from a byte order mark (streaming, 1 MiB chunks).

    Args:
        path: the source file.
        max_line_bytes: reject a file with a physical line longer than this (bytes); such a
            line cannot fit in any upload, and refusing it keeps memory bounded while parsing.

    Returns:
        The scan; without a BOM the codec is ``utf-8`` (checked later, while decoding).

    Raises:
        Unimportable: empty (0 bytes), a ZIP/Excel workbook, or NUL bytes in a file that is
            not UTF-16 (binary).
            A line longer than ``max_line_bytes``.
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    size = 0
    codec, encoding = "utf-8", "utf-8"
    with open(path, "rb") as source:
        first = source.read(CHUNK_BYTES)
        if not first:
            raise empty("The file is empty (0 bytes).")
        if first.startswith(b"PK\x03\x04"):
            raise Unimportable(
                "The file is a ZIP archive or an Excel workbook, not a CSV text file; "
                "save it as CSV UTF-8 and drop it again."
            )
        for bom, bom_codec, label in _BOMS:
            if first.startswith(bom):
                codec, encoding = bom_codec, label
                break
        check_nul = codec != "utf-16"
        limit = max_line_bytes if max_line_bytes is not None else 1 << 62
        run = 0  # bytes since the last line break
        chunk = first
        while chunk:
            if check_nul and b"\x00" in chunk:
                offset = size + chunk.index(b"\x00")
                raise Unimportable(
                    f"The file holds NUL bytes (first at byte {offset}): it is binary, "
                    "not a CSV text file."
                )
            digest.update(chunk)
            size += len(chunk)
            first_break = _first_break(chunk)
            if first_break < 0:
                run += len(chunk)
            else:
                run += first_break
                if run <= limit:
                    run = len(chunk) - 1 - max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
            if run > limit:
                end = size if first_break < 0 else size - len(chunk) + first_break
                line = _line_at(path, end - run)
                raise Unimportable(
                    f"Line {line} is longer than {limit} bytes: no record that long fits in "
                    "an upload (is it a CSV file with line breaks?)."
                )
            chunk = source.read(CHUNK_BYTES)
    return SourceScan(digest.hexdigest(), size, codec, encoding)


@dataclass(frozen=True, slots=True)
class Utf8Damage:
    """How a file that is not valid UTF-8 fails to be.

    Attributes:
        first_bad: byte offset of the first byte that is not UTF-8.
        bad: byte sequences that are not UTF-8.
        good: well-formed multi-byte UTF-8 characters.
    """

    first_bad: int
    bad: int
    good: int

    @property
    def damaged(self) -> bool:
        """Whether this is UTF-8 text with a few broken bytes rather than another encoding.

        Text in a single-byte code page almost never holds a well-formed multi-byte UTF-8
        sequence; UTF-8 text holds many. Guessing a code page for damaged UTF-8 would turn
        every accented letter into mojibake, so such a file is refused instead.
        """
        return self.good > 0 and self.good >= self.bad


def utf8_damage(path: Path) -> Utf8Damage:
    """Measure a file that failed strict UTF-8 decoding (streaming; for the rare path)."""
    strict = codecs.getincrementaldecoder("utf-8")("strict")
    lenient = codecs.getincrementaldecoder("utf-8")("replace")
    first_bad = -1
    offset = bad = good = 0
    with open(path, "rb") as source:
        while True:
            chunk = source.read(CHUNK_BYTES)
            final = not chunk
            if first_bad < 0:
                try:
                    strict.decode(chunk, final)
                except UnicodeDecodeError as exc:
                    first_bad = offset + max(0, exc.start)
            text = lenient.decode(chunk, final)
            replaced = text.count("\ufffd")
            bad += replaced
            good += len(text) - len(text.encode("ascii", "ignore")) - replaced
            offset += len(chunk)
            if final:
                break
    return Utf8Damage(max(first_bad, 0), bad, good)


def _line_at(path: Path, offset: int) -> int:
    """Return the 1-based line holding byte ``offset`` (counts line feeds; error path only)."""
    lines = 1
    with open(path, "rb") as source:
        while offset > 0:
            chunk = source.read(min(CHUNK_BYTES, offset))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            offset -= len(chunk)
    return lines


def _first_break(chunk: bytes) -> int:
    found = [i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0]
    return min(found) if found else -1


def guess_encoding(path: Path, bad_offset: int, *, allow_guess: bool) -> tuple[str, str]:
    """Guess the encoding of a file that is not valid UTF-8.

    Args:
        path: the source file.
        bad_offset: byte offset of the first byte that is not UTF-8 (approximate is fine).
        allow_guess: ``intake.allow_encoding_guess``.

    Returns:
        ``(codec, label)``: the Python codec to decode with and the name to report. When
        Windows-1252 reads the sample exactly like the best guess, or the best guess is a
        DOS/Mac code page tied with a Windows one, Windows-1252 is chosen.

    Raises:
        Unimportable: guessing is off, or nothing fits.
    """
    if not allow_guess:
        raise Unimportable(
            f"The file is not valid UTF-8 (first bad byte near offset {bad_offset}) and "
            "encoding guessing is off (intake.allow_encoding_guess); save it as UTF-8."
        )
    with open(path, "rb") as source:
        sample = source.read(SAMPLE_BYTES)
        if bad_offset > len(sample):
            source.seek(max(0, bad_offset - SAMPLE_BYTES // 4))
            sample += b"\n" + source.read(SAMPLE_BYTES)
    results = from_bytes(sample)
    best = results.best()
    if best is None:
        raise Unimportable(
            f"The file is not valid UTF-8 (first bad byte near offset {bad_offset}) and its "
            "encoding could not be recognised; save it as UTF-8."
        )
    codec = best.encoding
    if _CP1252 in best.could_be_from_charset or (codec.startswith(_LEGACY) and any(
        _CP1252 in m.could_be_from_charset for m in results if m.chaos <= best.chaos
    )):
        codec = _CP1252
    return codec, codec
