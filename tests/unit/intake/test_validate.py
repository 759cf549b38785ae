from __future__ import annotations

import pytest

from orchestrator.intake.fields import Catalogue
from orchestrator.intake.validate import (
    first_bad_value,
    is_boolean,
    is_date,
    is_datetime,
    is_float,
    is_integer,
    typed_columns,
)


@pytest.mark.parametrize("value", ["0", "-12", "+3", " 7 ", "0012"])
def test_integers(value: str) -> None:
    assert is_integer(value)


@pytest.mark.parametrize("value", ["1.5", "12a", "1 000", "0x10", "1e3"])
def test_not_integers(value: str) -> None:
    assert not is_integer(value)


@pytest.mark.parametrize("value", ["1.5", "-2", "3e4", ".5", " 2.0 ", "1E-3"])
def test_floats(value: str) -> None:
    assert is_float(value)


@pytest.mark.parametrize("value", ["nan", "inf", "1,5", "abc", "1_000"])
def test_not_floats(value: str) -> None:
    assert not is_float(value)


@pytest.mark.parametrize("value", ["true", "FALSE", "1", "0", "Yes", "no", "t", "F", " y "])
def test_booleans(value: str) -> None:
    assert is_boolean(value)


@pytest.mark.parametrize("value", ["maybe", "2", "ja", "truee"])
def test_not_booleans(value: str) -> None:
    assert not is_boolean(value)


@pytest.mark.parametrize(
    "value", ["2024-02-29", "2024-02-29T10:00:00", "2024-02-29 10:00", "12/31/2023", "2/3/2024"]
)
def test_dates(value: str) -> None:
    assert is_date(value)


@pytest.mark.parametrize("value", ["2023-02-29", "31/12/2023", "yesterday", "2024-13-01"])
def test_not_dates(value: str) -> None:
    assert not is_date(value)


@pytest.mark.parametrize(
    "value", ["2024-05-01T10:20:30Z", "2024-05-01T10:20:30+02:00", "2024-05-01 10:20:30.123", "2024-05-01"]
)
def test_datetimes(value: str) -> None:
    assert is_datetime(value)


def test_first_bad_value_names_display_name_and_skips_empty(catalogue: Catalogue) -> None:
    fields = [catalogue.get(n) for n in ["email", "leadScore", "unsubscribed", "annualRevenue"]]
    typed = typed_columns(fields)
    assert [t[0] for t in typed] == [1, 2, 3]
    assert first_bad_value(["a@b.c", "", " ", "12.5"], typed) is None
    assert first_bad_value(["a@b.c", "12", "perhaps", "x"], typed) == (
        "Invalid data type in field Unsubscribed"
    )
    assert first_bad_value(["a@b.c", "12", "yes", "12,5"], typed) == (
        "Invalid data type in field Annual Revenue"
    )
