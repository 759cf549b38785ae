from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
VENDORED_INPUTS = TESTS / "fixtures" / "inputs"
SHARED_INPUTS = TESTS.parent.parent / "shared" / "inputs"


def test_vendored_inputs_match_shared_inputs() -> None:
    """tests/fixtures/inputs is a copy of ../shared/inputs; it must not drift."""
    vendored = {p.name: p.read_bytes() for p in VENDORED_INPUTS.iterdir()}
    assert "quoted-commas-quotes-newlines.csv" in vendored
    if not SHARED_INPUTS.is_dir():
        pytest.skip("../shared/inputs is not next to this checkout; the copy is used")
    shared = {p.name: p.read_bytes() for p in SHARED_INPUTS.iterdir()}
    assert vendored == shared
