"""Western European exports (Windows-1252 / Latin-1) are read as Windows-1252; intake.encoding."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from faker import Faker
from pydantic import ValidationError
from structlog.testing import capture_logs

from orchestrator.intake.encoding import prefer_cp1252, scan_source
from orchestrator.intake.fields import Catalogue
from orchestrator.intake.prepare import Prepared, PrepareSpec, max_line_bytes, prepare_file
from orchestrator.intake.reasons import Unimportable
from orchestrator.settings import IntakeSettings


def prepare(
    tmp_path: Path, data: bytes, catalogue: Catalogue, encoding: str | None = None
) -> Prepared:
    source = tmp_path / "source" / "in.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(data)
    spec = PrepareSpec(
        catalogue=catalogue, lookup_field="email", max_upload_bytes=9_500_000, encoding=encoding
    )
    return prepare_file(source, tmp_path, scan_source(source, max_line_bytes(9_500_000)), spec)


def uploaded(prepared: Prepared) -> list[list[str]]:
    out: list[list[str]] = []
    for upload in prepared.uploads:
        out.extend(list(csv.reader(io.StringIO(upload.path.read_bytes().decode(), newline="")))[1:])
    return out


def faker_rows(locale: str, count: int) -> list[list[str]]:
    fake = Faker(locale)
    fake.seed_instance(7)
    return [
        [f"u{i}@example.com", fake.first_name(), fake.last_name(), fake.city()]
        for i in range(count)
    ]


def semicolons(rows: list[list[str]]) -> str:
    lines = ["email;firstName;lastName;city", *(";".join(row) for row in rows)]
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize("locale", ["es_ES", "pt_PT", "fr_FR", "it_IT", "nl_NL", "sv_SE"])
def test_western_european_cp1252_exports_keep_their_names(
    tmp_path: Path, catalogue: Catalogue, locale: str
) -> None:
    rows = faker_rows(locale, 2000)
    data = semicolons(rows).encode("cp1252")
    prepared = prepare(tmp_path, data, catalogue)
    assert (prepared.encoding, prepared.format, prepared.rows_rejected) == ("cp1252", "ssv", 0)
    assert uploaded(prepared) == rows


def test_two_row_latin1_file_is_read_as_cp1252(tmp_path: Path, catalogue: Catalogue) -> None:
    data = "email,firstName,lastName\r\njose@x.com,José,Peña\r\nana@x.com,Ana,Muñoz\r\n"
    prepared = prepare(tmp_path, data.encode("latin-1"), catalogue)
    assert prepared.encoding == "cp1252"
    assert uploaded(prepared) == [["jose@x.com", "José", "Peña"], ["ana@x.com", "Ana", "Muñoz"]]


def test_polish_cp1250_export_is_still_read_as_cp1250(tmp_path: Path, catalogue: Catalogue) -> None:
    rows = faker_rows("pl_PL", 500)
    prepared = prepare(tmp_path, semicolons(rows).encode("cp1250"), catalogue)
    assert prepared.encoding == "cp1250"
    assert uploaded(prepared) == rows


def test_intake_encoding_forces_the_code_page(tmp_path: Path, catalogue: Catalogue) -> None:
    data = "email,lastName,city\r\na@x.com,Dvořák,Plzeň\r\nb@x.com,Šťastný,Brno\r\n"
    with capture_logs() as logs:
        prepared = prepare(tmp_path, data.encode("cp1250"), catalogue, encoding="cp1250")
    assert prepared.encoding == "cp1250"
    assert uploaded(prepared)[0] == ["a@x.com", "Dvořák", "Plzeň"]
    assert {"event": "encoding_guessed", "encoding": "cp1250", "forced": True}.items() <= next(
        e for e in logs if e["event"] == "encoding_guessed"
    ).items()


def test_intake_encoding_does_not_apply_to_utf8_files(tmp_path: Path, catalogue: Catalogue) -> None:
    data = "email,lastName\r\na@x.com,Núñez\r\n".encode()
    prepared = prepare(tmp_path, data, catalogue, encoding="cp1250")
    assert (prepared.encoding, uploaded(prepared)) == ("utf-8", [["a@x.com", "Núñez"]])


def test_forced_encoding_that_does_not_fit_rejects(tmp_path: Path, catalogue: Catalogue) -> None:
    data = b"email,lastName\r\na@x.com,M\x81ller\r\n"  # 0x81 is undefined in Windows-1252
    with pytest.raises(Unimportable) as err:
        prepare(tmp_path, data, catalogue, encoding="cp1252")
    assert err.value.reason == (
        "The file is neither UTF-8 nor cp1252 (intake.encoding); save it as UTF-8."
    )


def test_intake_encoding_setting_is_validated() -> None:
    assert IntakeSettings().encoding is None
    assert IntakeSettings(encoding="Windows-1252").encoding == "cp1252"
    assert IntakeSettings(encoding="latin-1").encoding == "iso8859-1"
    with pytest.raises(ValidationError, match="not a known encoding: 'klingon'"):
        IntakeSettings(encoding="klingon")


@pytest.mark.parametrize(
    ("guessed", "implausible", "gain", "evidence", "chosen"),
    [
        ("cp1250", (0, 0), 0.0, 500, "cp1252"),  # Núñez / Núńez: a tie, no coherence gain
        ("cp1250", (0, 7), 0.0, 500, "cp1250"),  # Wroc³aw as Windows-1252
        ("cp1257", (3, 0), 0.0, 500, "cp1252"),  # the guess puts symbols inside words
        ("cp1250", (0, 0), 0.04, 500, "cp1250"),  # Croatian: coherence decides a tie
        ("cp1250", (0, 0), 0.04, 3, "cp1252"),  # ... but not on three accented letters
        ("cp850", (0, 0), 0.09, 500, "cp1252"),  # DOS pages never win a tie
        ("johab", (0, 0), 0.0, 4, "cp1252"),  # four umlauts are not Korean
        ("johab", (0, 0), 0.0, 400, "johab"),
        ("cp1251", (0, 0), 0.0, 2, "cp1251"),  # Cyrillic guesses are kept
    ],
)
def test_prefer_cp1252(
    guessed: str, implausible: tuple[int, int], gain: float, evidence: int, chosen: str
) -> None:
    guess_bad, cp1252_bad = implausible
    assert (
        prefer_cp1252(
            guessed,
            guess_implausible=guess_bad,
            cp1252_implausible=cp1252_bad,
            coherence_gain=gain,
            evidence=evidence,
        )
        == chosen
    )
