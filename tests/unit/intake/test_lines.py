from __future__ import annotations

import csv
import io

import pytest

from orchestrator.intake import lines as lines_mod
from orchestrator.intake.lines import LineFeed, canonical, split_lines

TRICKY = [
    "a,b\r\nc,d\r\n",
    "a\rb\nc\r\nd",
    "x\u2028y\r\nz\x85w\x0b\x0c\x1c\x1d\x1e\u2029\n",
    "only\r",
    "\r\n\r\n\n\r",
    "",
    "no break at all",
    "mixed\r\nends\nhere\r",
]


@pytest.mark.parametrize("text", TRICKY)
def test_split_lines_matches_a_newline_empty_text_file(text: str) -> None:
    assert split_lines(text) == list(io.StringIO(text, newline=""))


@pytest.mark.parametrize("text", TRICKY)
def test_line_feed_matches_a_text_file_across_small_chunks(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lines_mod, "CHUNK_BYTES", 3)  # CR and LF fall on chunk edges
    data = text.encode("utf-16")
    feed = LineFeed(io.BytesIO(data), "utf-16")
    got = list(feed)
    assert got == list(io.StringIO(text, newline=""))
    assert feed.text(0, len(got)) == "".join(got)


def test_line_feed_text_forgets_old_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lines_mod, "CHUNK_BYTES", 8)
    text = "".join(f"line {i}\r\n" for i in range(50))
    feed = LineFeed(io.BytesIO(text.encode()), "utf-8")
    it = iter(feed)
    read = [next(it) for _ in range(30)]
    assert feed.text(20, 30) == "".join(read[20:30])
    assert feed._chunks[0][0] <= 20 < feed._chunks[1][0]  # chunks before line 20 dropped


def test_line_feed_raises_on_bad_bytes() -> None:
    feed = LineFeed(io.BytesIO(b"a,b\r\n\xff\xfe,c\r\n"), "utf-8")
    with pytest.raises(UnicodeDecodeError):
        list(feed)


def _written(text: str) -> str:
    out = io.StringIO()
    rows = csv.reader(io.StringIO(text, newline=""))
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a,"b,c","d ""e"""\r\n', True),
        ('x,"two\nlines",\r\n , é ,\u2028\r\n', True),
        ('"1\r2",3\r\n', True),
        ('a,"b"\r\n', False),  # needless quotes
        ('a,""\r\n', False),  # an empty value the writer leaves unquoted
        ("a,b\n", False),  # LF record end
        ("a,b", False),  # no record end
        ('a"b,c\r\n', False),  # quote inside an unquoted value
        ('"a"b,c\r\n', False),  # text after the closing quote
        ("a\rb,c\r\n", False),  # bare CR
    ],
)
def test_canonical_means_the_writer_writes_the_same(text: str, expected: bool) -> None:
    assert canonical(text) is expected
    if expected:
        assert _written(text) == text
