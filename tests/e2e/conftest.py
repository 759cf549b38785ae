"""End-to-end tests: no daemon outlives its test, even when an assertion fails mid-way."""

from __future__ import annotations

from collections.abc import Iterator

import e2e_support
import pytest


@pytest.fixture(autouse=True)
def _no_daemon_left_behind() -> Iterator[None]:
    yield
    e2e_support.kill_started()
