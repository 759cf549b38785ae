"""Source bytes: SHA-256, binary detection, byte order marks and encoding guesses.

Order (issue 5): a byte order mark (UTF-8, UTF-16LE/BE) decides; otherwise the file must be
strict UTF-8, which ``prepare`` checks while it decodes (no extra pass); if it is not, the
encoding is ``intake.encoding`` when set, else guessed with ``charset-normalizer`` from a
bounded sample (unless ``intake.allow_encoding_guess`` is false), with Windows-1252 preferred
among Latin single-byte pages (``prefer_cp1252``). docs/reference/marketo-api.md §7: uploads are
UTF-8 without BOM.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import structlog
from charset_normalizer import CharsetMatches, from_bytes

from orchestrator.intake.reasons import Unimportable, empty

log = structlog.get_logger(__name__)

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
_LEGACY: tuple[str, ...] = ("cp437", "cp775", "cp850", "cp852", "cp857", "cp858", "cp860", "cp861")
_LEGACY += ("cp863", "cp865", "mac_", "hp_roman8")
#: Windows-1252: what Excel writes on Western Windows.
_CP1252 = "cp1252"
#: Latin-script single-byte pages that Windows-1252 text is mistaken for (charset-normalizer
#: names); other guesses (Cyrillic, Greek, Hebrew, CJK, ...) are kept as they are.
_LATIN: tuple[str, ...] = ("cp1250", "cp1252", "cp1254", "cp1257", "cp1258", "latin_1", "iso8859_1")
_LATIN += ("iso8859_2", "iso8859_3", "iso8859_4", "iso8859_9", "iso8859_10", "iso8859_13")
_LATIN += ("iso8859_14", "iso8859_15", "iso8859_16", "mac_iceland", "mac_latin2", "mac_roman")
_LATIN += ("mac_turkish", *(page for page in _LEGACY if page != "mac_"))
#: Least coherence gain (charset-normalizer, 0..1) for a Windows/ISO page to beat
#: Windows-1252 on a tie; Western files read as Windows-1250 show no gain (Croatian, Slovene
#: and Lithuanian in their own pages gain 0.02 to 0.2).
COHERENCE_MARGIN = 0.01
#: Fewer non-ASCII characters than this are no evidence against Windows-1252 (a 2-row file
#: with one ``á`` reads best as Windows-1257 to the guesser, a few umlauts as Korean Johab).
MIN_EVIDENCE = 8
#: Multi-byte East Asian codecs (charset-normalizer names).
_CJK = ("big5", "cp932", "cp949", "cp950", "euc_", "gb", "hz", "iso2022", "johab", "shift_jis")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


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


def guess_encoding(
    path: Path, bad_offset: int, *, allow_guess: bool, forced: str | None = None
) -> tuple[str, str]:
    """Decide the encoding of a file that is neither BOM-marked nor valid UTF-8.

    Args:
        path: the source file.
        bad_offset: byte offset of the first byte that is not UTF-8 (approximate is fine).
        allow_guess: ``intake.allow_encoding_guess``.
        forced: ``intake.encoding``: use this codec without guessing (None: guess).

    Returns:
        ``(codec, label)``: the Python codec to decode with and the name to report. The
        guesser's pick is checked by ``prefer_cp1252``: Windows-1252 wins unless the evidence
        for the other code page is strong.

    Raises:
        Unimportable: guessing is off, the forced codec is unknown, or nothing fits.
    """
    if forced is not None:
        try:
            name = codecs.lookup(forced).name
        except LookupError as exc:
            raise Unimportable(
                f"intake.encoding is {forced!r}, which is not a known encoding."
            ) from exc
        return name, name
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
    if _CP1252 in best.could_be_from_charset:
        return _CP1252, _CP1252
    cp1252_text = _decode(sample, _CP1252)
    if cp1252_text is None:
        return best.encoding, best.encoding
    coherence = _coherence(sample, _CP1252, results)
    codec = prefer_cp1252(
        best.encoding,
        guess_implausible=implausible_letters(str(best)),
        cp1252_implausible=implausible_letters(cp1252_text),
        coherence_gain=best.coherence - coherence,
        evidence=len(_NON_ASCII.findall(cp1252_text)),
    )
    if codec != best.encoding:
        log.info("encoding_guess_overridden", guessed=best.encoding, encoding=codec)
    return codec, codec


def prefer_cp1252(
    guessed: str,
    *,
    guess_implausible: int,
    cp1252_implausible: int,
    coherence_gain: float,
    evidence: int,
) -> str:
    """Choose between the guesser's code page and Windows-1252 (pure; the sample decodes as both).

    Western European exports (Windows-1252 / Latin-1) are by far the most common non-UTF-8
    lead files, and on names and cities the guesser often ranks a Central European, Baltic or
    DOS page first (``Núñez`` read as Windows-1250 is ``Núńez``). Windows-1252 is kept unless
    the evidence for the other page is strong:

    - the guess is a single-byte page that is not Latin (Cyrillic, Greek, ...), or a CJK page
      with at least ``MIN_EVIDENCE`` non-ASCII characters: the guess;
    - Windows-1252 puts more non-letters next to letters (``Wroc³aw``): the guess;
    - it puts fewer: Windows-1252;
    - a tie on a Windows/ISO page: the guess only if its language coherence (charset-normalizer,
      0..1) beats Windows-1252's by at least ``COHERENCE_MARGIN`` over at least
      ``MIN_EVIDENCE`` non-ASCII characters; DOS/Mac pages never win a tie.

    Args:
        guessed: the guesser's codec name (``cp1250``, ``cp775``, ``koi8_r``, ...).
        guess_implausible: non-letter characters >= U+0080 next to a letter, decoded as guessed.
        cp1252_implausible: the same count decoded as Windows-1252.
        coherence_gain: the guess's coherence minus Windows-1252's.
        evidence: non-ASCII characters in the sample read as Windows-1252.

    Returns:
        ``guessed`` or ``"cp1252"``.
    """
    few = evidence < MIN_EVIDENCE
    if guessed.startswith(_CJK):
        return _CP1252 if few and cp1252_implausible == 0 else guessed
    if not guessed.startswith(_LATIN):
        return guessed
    if cp1252_implausible != guess_implausible:
        return guessed if cp1252_implausible > guess_implausible else _CP1252
    if guessed.startswith(_LEGACY) or few:
        return _CP1252
    return guessed if coherence_gain >= COHERENCE_MARGIN else _CP1252


def implausible_letters(text: str) -> int:
    """Count non-letter characters at or above U+0080 that touch a letter (``Wroc³aw``: 1)."""
    count = 0
    last = len(text) - 1
    for found in _NON_ASCII.finditer(text):
        index = found.start()
        if not found.group().isalpha() and (
            (index > 0 and text[index - 1].isalpha())
            or (index < last and text[index + 1].isalpha())
        ):
            count += 1
    return count


def _decode(sample: bytes, codec: str) -> str | None:
    """Decode the sample strictly (a cut multi-byte tail cannot occur: single-byte codecs)."""
    try:
        return sample.decode(codec)
    except UnicodeDecodeError:
        return None


def _coherence(sample: bytes, codec: str, results: CharsetMatches) -> float:
    """charset-normalizer's language coherence of the sample read as ``codec`` (0 if unfit)."""
    for match in results:
        if codec == match.encoding or codec in match.could_be_from_charset:
            return match.coherence
    found = from_bytes(sample, cp_isolation=[codec]).best()
    return found.coherence if found is not None else 0.0
