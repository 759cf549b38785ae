"""Small CLI fixes: ``leadflow --version`` and ``submit`` of a name intake ignores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.cli import cli
from orchestrator.commands.submit import submit_command
from orchestrator.settings import Settings


async def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    assert await cli(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"leadflow {version('leadflow')}"


@pytest.mark.parametrize("name", [".hidden.csv", "~$leads.csv", "leads.csv.tmp", "leads.PART"])
async def test_submit_refuses_a_name_the_daemon_would_never_take(
    make_settings: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    settings = make_settings()
    source = tmp_path / name
    source.write_text("email\na@x.com\n")
    assert await submit_command(settings, source, None) == 2
    err = capsys.readouterr().err
    assert f"the daemon ignores files named like {name!r}" in err
    assert list(settings.paths.inbox.iterdir()) == []


async def test_submit_still_takes_an_ordinary_name(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    source = tmp_path / "leads.csv"
    source.write_text("email\na@x.com\n")
    assert await submit_command(settings, source, None) == 0
    assert (settings.paths.inbox / "leads.csv").read_text() == "email\na@x.com\n"
