"""[http] settings, the listener rule, and what a reload may change."""

from __future__ import annotations

import pytest

from orchestrator.errors import ConfigError
from orchestrator.settings import (
    DEFAULT_HTTP_LISTEN,
    HttpSettings,
    is_loopback,
    load_settings,
    parse_listen,
    reload_plan,
)
from orchestrator.window import check_listen


def test_default_listener_is_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADFLOW_HTTP__LISTEN")
    settings = load_settings()
    assert settings.http.listen == DEFAULT_HTTP_LISTEN == "127.0.0.1:9464"
    assert settings.http.address == ("127.0.0.1", 9464) and settings.http.bearer is None
    monkeypatch.setenv("LEADFLOW_HTTP__LISTEN", "")
    assert load_settings().http.address is None  # "" turns it off
    monkeypatch.setenv("LEADFLOW_HTTP__LISTEN", "[::1]:9500")
    assert load_settings().http.address == ("::1", 9500)


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    (" localhost:0 ", ("localhost", 0)),
    ("[::1]:80", ("::1", 80)),
    (":9464", ("", 9464)),
    ("", None),
])
def test_parse_listen(text: str, expected: tuple[str, int] | None) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9464", "127.0.0.1", "host:99999", "[::1]", "a b:1", "::1:80"])
def test_bad_listen_values_name_the_key(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, {"http": {"listen": text}})
    assert err.value.key == "http.listen"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.168.1.5", False),
    ("leadflow.example.com", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_outside_loopback_a_token_is_required() -> None:
    check_listen(HttpSettings(listen="127.0.0.1:9464"))
    check_listen(HttpSettings(listen=""))
    check_listen(HttpSettings(listen="0.0.0.0:9464", token="t0ken-value"))  # type: ignore[arg-type]
    for listen in ("0.0.0.0:9464", "[::]:9464", ":9464", "10.1.2.3:9464"):
        with pytest.raises(ConfigError) as err:
            check_listen(HttpSettings(listen=listen))
        assert err.value.key == "http.token"
    with pytest.raises(ConfigError):
        check_listen(HttpSettings(listen="0.0.0.0:1", token="  "))  # type: ignore[arg-type]


def test_reload_plan_applies_live_sections_and_names_the_rest() -> None:
    running = load_settings(None, {"limits": {"import_slots": 4}, "log": {"format": "json"}})
    new = load_settings(None, {
        "limits": {"import_slots": 6, "calls_per_20s": 30},
        "polling": {"min_interval_s": 1, "max_interval_s": 2},
        "routes": [{"name": "events", "list_id": 1001}],
        "import": {"list_id": 7},
        "log": {"level": "debug", "format": "console"},
        "paths": {"inbox": "/elsewhere/inbox"},
        "http": {"listen": "127.0.0.1:9999"},
        "marketo": {"client_secret": "rotated-secret"},
        "daemon": {"idle_tick_s": 0.5},
    })
    effective, changed, restart = reload_plan(running, new)
    assert effective.limits.import_slots == 6 and effective.limits.calls_per_20s == 30
    assert effective.polling.max_interval_s == 2 and effective.import_.list_id == 7
    assert [r.name for r in effective.routes] == ["events"]
    assert effective.log.level == "debug" and effective.log.format == "json"
    assert effective.paths == running.paths and effective.http == running.http
    assert effective.marketo == running.marketo and effective.daemon == running.daemon
    assert set(changed) == {"limits.import_slots", "limits.calls_per_20s",
                            "polling.min_interval_s", "polling.max_interval_s", "routes",
                            "import.list_id", "log.level"}
    assert set(restart) == {"paths.inbox", "http.listen", "marketo.client_secret",
                            "daemon.idle_tick_s", "log.format"}
    assert "rotated-secret" not in repr(restart)


def test_reload_plan_of_the_same_settings_changes_nothing() -> None:
    settings = load_settings(None, {"routes": [{"name": "a"}]})
    effective, changed, restart = reload_plan(settings, load_settings(None, {"routes": [{"name": "a"}]}))
    assert (changed, restart) == ([], []) and effective == settings
