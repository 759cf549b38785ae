from __future__ import annotations

import pytest

from orchestrator.intake.reasons import Unimportable
from orchestrator.intake.sniff import sniff_delimiter


def known(columns: list[str]) -> bool:
    return all(c in {"email", "firstName", "company"} for c in columns)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("email,firstName", ","),
        ("email\tfirstName", "\t"),
        ("email;firstName", ";"),
        ("email", ","),
        ('"email","first;Name"', ","),  # a semicolon inside quotes does not count
    ],
)
def test_single_candidate(line: str, expected: str) -> None:
    assert sniff_delimiter(line, known) == expected


def test_tie_broken_by_known_fields() -> None:
    # split by ";" gives known fields; split by "," gives "email;first" ...
    assert sniff_delimiter("email;firstName;company", known) == ";"
    assert sniff_delimiter("email,firstName,company", known) == ","


def test_ambiguous_header_rejects() -> None:
    with pytest.raises(Unimportable) as err:
        sniff_delimiter("a,b;c", known)
    assert err.value.reason == (
        "The delimiter is ambiguous: the header line holds both comma and semicolon; "
        "use one delimiter (comma, tab or semicolon)."
    )


def test_tie_with_both_splits_known_rejects() -> None:
    with pytest.raises(Unimportable):
        sniff_delimiter("email,firstName\tcompany", lambda cols: True)
