from __future__ import annotations

import pytest

from orchestrator.intake.fields import Catalogue
from orchestrator.intake.header import map_header
from orchestrator.intake.reasons import Unimportable


def test_exact_then_case_insensitive_then_display_name(catalogue: Catalogue) -> None:
    hmap = map_header([" email ", "FIRSTNAME", "Last  Name", "company name"], catalogue, "email")
    assert hmap.names == ["email", "firstName", "lastName", "company"]
    assert hmap.source == [" email ", "FIRSTNAME", "Last  Name", "company name"]
    assert hmap.lookup_index == 0


def test_exact_name_beats_display_name(catalogue: Catalogue) -> None:
    # "Id" is the display name of id and, case-insensitively, the REST name too.
    assert map_header(["Email Address", "Id"], catalogue, "email").names == ["email", "id"]


def test_stray_bom_in_first_column_is_trimmed(catalogue: Catalogue) -> None:
    assert map_header(["\ufeffemail", "city"], catalogue, "email").names == ["email", "city"]


def test_unknown_column_names_close_matches(catalogue: Catalogue) -> None:
    with pytest.raises(Unimportable) as err:
        map_header(["emial", "firstName"], catalogue, "email")
    assert err.value.reason == (
        "Unknown column 'emial' (did you mean 'email'?): not a field of the lead describe."
    )


def test_several_unknown_columns_without_suggestion(catalogue: Catalogue) -> None:
    with pytest.raises(Unimportable) as err:
        map_header(["email", "Frist Name", "zzz"], catalogue, "email")
    assert err.value.reason == (
        "Unknown columns 'Frist Name' (did you mean 'firstName' or 'lastName'?), 'zzz': "
        "not a field of the lead describe."
    )


def test_duplicate_column_after_mapping(catalogue: Catalogue) -> None:
    with pytest.raises(Unimportable) as err:
        map_header(["email", "First Name", "firstname"], catalogue, "email")
    assert err.value.reason == "Columns 'First Name' and 'firstname' both map to the field 'firstName'."


def test_missing_lookup_column(catalogue: Catalogue) -> None:
    with pytest.raises(Unimportable) as err:
        map_header(["firstName", "lastName"], catalogue, "email")
    assert err.value.reason == "The lookup column 'email' is missing from the header."


def test_column_without_name(catalogue: Catalogue) -> None:
    with pytest.raises(Unimportable) as err:
        map_header(["email", "  ", "city"], catalogue, "email")
    assert err.value.reason == "Column 2 of the header has no name."


def test_without_catalogue_names_pass_through_trimmed() -> None:
    hmap = map_header([" vin ", "model"], None, "vin")
    assert hmap.names == ["vin", "model"]
    assert hmap.fields == [None, None]


def test_suggestions_come_from_display_names_too(catalogue: Catalogue) -> None:
    assert catalogue.suggest("Phone Numbr") == ["phone"]
