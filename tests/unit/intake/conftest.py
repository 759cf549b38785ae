"""Fixtures of intake's unit tests: a fake field catalogue."""

from __future__ import annotations

import pytest

from orchestrator.intake.fields import Catalogue, Field

#: A small lead describe, shaped like the simulator's standard fields.
FIELDS = [
    Field("email", "Email Address", "email"),
    Field("firstName", "First Name"),
    Field("lastName", "Last Name"),
    Field("company", "Company Name"),
    Field("address", "Address", "text"),
    Field("city", "City"),
    Field("phone", "Phone Number", "phone"),
    Field("numberOfEmployees", "Num Employees", "integer"),
    Field("annualRevenue", "Annual Revenue", "currency"),
    Field("leadScore", "Lead Score", "integer"),
    Field("unsubscribed", "Unsubscribed", "boolean"),
    Field("dateOfBirth", "Date of Birth", "date"),
    Field("lastVisit", "Last Visit", "datetime"),
    Field("rating", "Rating", "float"),
    Field("id", "Id", "integer", None, True),
]


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue(FIELDS)
