"""The note ``leadflow retry`` adds when the running daemon's route differs from the file's."""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.commands.retry import _stale_note
from orchestrator.settings import Route, Settings


def test_retry_says_when_the_daemon_was_not_reloaded(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(routes=[{"name": "eu", "partition_name": "Default"}])
    running = Route.model_validate({"name": "eu", "partition_name": "Europe"})
    note = _stale_note(settings, running)
    assert note.startswith("; note: route 'eu' is re-sent with the running daemon's settings")
    assert "reload the daemon first" in note
    assert _stale_note(settings, settings.routes[0]) == ""
    assert _stale_note(settings, None) == ""
