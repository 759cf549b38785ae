"""The demo's generated lead files: deterministic, realistic, and their expected figures true."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from orchestrator.demo.files import (
    SMALL_BIG_FILE_BYTES,
    DemoFile,
    ascii_slug,
    write_demo_files,
)
from orchestrator.demo.runner import SMALL_MAX_UPLOAD_BYTES
from orchestrator.simulator.config import DEFAULT_LEAD_FIELDS

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")  # the simulator's "plausible address"
INT = re.compile(r"[+-]?\d+")
NULLS = {"", "NULL", "null", "undefined", "#N/A", "N/A", "None"}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[DemoFile]]:
    inbox = tmp_path_factory.mktemp("inbox")
    return inbox, write_demo_files(inbox, small=True)


def _rows(path: Path, encoding: str, delimiter: str) -> list[list[str]]:
    text = path.read_bytes().decode(encoding)
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def test_same_seed_same_bytes(tmp_path: Path, small: tuple[Path, list[DemoFile]]) -> None:
    inbox, files = small
    again = write_demo_files(tmp_path, small=True)
    assert [f.name for f in again] == [f.name for f in files]
    for f in files:
        assert (tmp_path / f.name).read_bytes() == (inbox / f.name).read_bytes(), f.name


def test_files_are_what_users_send(small: tuple[Path, list[DemoFile]]) -> None:
    inbox, files = small
    by_name = {f.name: f for f in files}
    big = inbox / "crm-export-2026-q1.csv"
    assert big.stat().st_size >= SMALL_BIG_FILE_BYTES
    assert big.stat().st_size > 3 * SMALL_MAX_UPLOAD_BYTES  # split into several uploads
    assert any("\n" in value for row in _rows(big, "utf-8", ",") for value in row)
    tsv = (inbox / "salesforce-contacts.tsv").read_text()
    assert tsv.split("\n", 1)[0].split("\t")[:3] == ["Email", "FirstName", "LastName"]
    ssv = (inbox / "messe-muenchen-leads.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        ssv.decode("utf-8")
    assert "€" in ssv.decode("cp1252") and ";" in ssv.decode("cp1252").splitlines()[0]
    utf16 = (inbox / "excel-unicode-text.txt").read_bytes()
    assert utf16.startswith(b"\xff\xfe")
    assert utf16[2:].decode("utf-16-le").startswith("email\tfirstName")
    display = (inbox / "trade-show-badge-scans.csv").read_bytes()
    assert display.startswith(b"\xef\xbb\xbfEmail Address,First Name,Last Name,Company Name")
    displays = {f.display_name for f in DEFAULT_LEAD_FIELDS}
    header = display[3:].decode().splitlines()[0].split(",")
    assert set(header) <= displays
    assert (inbox / "empty-export.csv").read_text().count("\n") == 1
    assert by_name["empty-export.csv"].expected.status == "empty"
    assert (inbox / "webinar" / "webinar-attendees-2026-03.csv").is_file()


@pytest.mark.parametrize(
    ("name", "encoding", "delimiter"),
    [
        ("crm-export-2026-q1.csv", "utf-8", ","),
        ("salesforce-contacts.tsv", "utf-8", "\t"),
        ("messe-muenchen-leads.csv", "cp1252", ";"),
        ("excel-unicode-text.txt", "utf-16", "\t"),
        ("trade-show-badge-scans.csv", "utf-8-sig", ","),
        ("newsletter-signups.csv", "utf-8", ","),
        ("webinar/webinar-attendees-2026-03.csv", "utf-8", ","),
    ],
)
def test_expected_figures_match_the_content(
    small: tuple[Path, list[DemoFile]], name: str, encoding: str, delimiter: str
) -> None:
    """Recount every file with its own rules; the expectations the demo checks must hold."""
    inbox, files = small
    demo = next(f for f in files if f.name == name)
    header, *rows = _rows(inbox / name, encoding, delimiter)
    assert demo.expected.total == len(rows)
    assert dict(zip(("email", "firstName", "lastName"), rows[0][:3], strict=True)) == demo.spot
    col = {h: i for i, h in enumerate(header)}
    rejected = warned = 0
    for row in rows:
        bad_int = any(k in col and not INT.fullmatch(row[col[k]])
                      for k in ("numberOfEmployees", "leadScore"))
        bad_bool = "unsubscribed" in col and row[col["unsubscribed"]] not in {"true", "false"}
        if len(row) != len(header) or row[0].strip() in NULLS or bad_int or bad_bool:
            rejected += 1
        elif not EMAIL.fullmatch(row[0]) or ("title" in col and len(row[col["title"]]) > 255):
            warned += 1
    assert (demo.expected.rejected, demo.expected.warned) == (rejected, warned)
    if name == "newsletter-signups.csv":
        assert rejected >= 5 and warned >= 3 and demo.expected.status == "partial"


def test_emails_unique_across_files(small: tuple[Path, list[DemoFile]]) -> None:
    """So the simulator's lead count equals the rows imported."""
    inbox, _ = small
    emails: list[str] = []
    for name, enc, delim in [
        ("crm-export-2026-q1.csv", "utf-8", ","), ("salesforce-contacts.tsv", "utf-8", "\t"),
        ("messe-muenchen-leads.csv", "cp1252", ";"), ("excel-unicode-text.txt", "utf-16", "\t"),
        ("trade-show-badge-scans.csv", "utf-8-sig", ","), ("newsletter-signups.csv", "utf-8", ","),
        ("webinar/webinar-attendees-2026-03.csv", "utf-8", ","),
    ]:
        emails += [r[0] for r in _rows(inbox / name, enc, delim)[1:] if r[0] not in NULLS]
    assert len(emails) == len(set(emails))


def test_ascii_slug() -> None:
    assert ascii_slug("Müller-Lüdenscheidt") == "mullerludenscheidt"
    assert ascii_slug("佐藤") == ""
