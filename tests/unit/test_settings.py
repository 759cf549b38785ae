from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import cli
from orchestrator.errors import ConfigError
from orchestrator.settings import DEFAULT_MAX_UPLOAD_BYTES, load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_the_issue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.limits.import_slots == 10
    assert s.limits.max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES == 9_500_000
    assert (s.limits.calls_per_20s, s.limits.max_concurrent_calls) == (50, 5)
    assert s.limits.daily_call_budget == 10_000
    assert (s.polling.min_interval_s, s.polling.max_interval_s) == (5, 30)
    assert (s.intake.stable_s, s.intake.rescan_interval_s) == (5, 10)
    assert s.import_.lookup_field == "email"
    assert s.paths.inbox == tmp_path / "var" / "inbox"
    assert s.paths.database == tmp_path / "var" / "leadflow.db"


def test_precedence_defaults_toml_env_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(
        tmp_path / "c.toml",
        '[limits]\nimport_slots = 4\ncalls_per_20s = 40\nmax_concurrent_calls = 3\n'
        '[import]\nlookup_field = "id"\nlist_id = 7\n',
    )
    monkeypatch.setenv("LEADFLOW_LIMITS__CALLS_PER_20S", "30")
    monkeypatch.setenv("LEADFLOW_LIMITS__MAX_CONCURRENT_CALLS", "2")
    monkeypatch.setenv("LEADFLOW_IMPORT__PARTITION_NAME", "Europe")
    s = load_settings(cfg, {"limits": {"max_concurrent_calls": 1}})
    assert s.limits.import_slots == 4  # TOML beats default
    assert s.limits.calls_per_20s == 30  # env beats TOML
    assert s.limits.max_concurrent_calls == 1  # flag beats env
    assert s.import_.lookup_field == "id" and s.import_.list_id == 7
    assert s.import_.partition_name == "Europe"  # env for the aliased `import` section


def test_config_from_env_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path / "c.toml", "[polling]\nmin_interval_s = 0.2\nmax_interval_s = 0.5\n")
    monkeypatch.setenv("LEADFLOW_CONFIG", str(cfg))
    s = load_settings()
    assert (s.polling.min_interval_s, s.polling.max_interval_s) == (0.2, 0.5)


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(Exception, match="frozen"):
        s.limits.import_slots = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://123-ABC-456.mktorest.com/rest/", "https://123-ABC-456.mktorest.com"),
        ("https://123-ABC-456.mktorest.com/rest", "https://123-ABC-456.mktorest.com"),
        ("https://123-ABC-456.mktorest.com/", "https://123-ABC-456.mktorest.com"),
    ],
)
def test_base_url_is_normalised(url: str, expected: str) -> None:
    s = load_settings(None, {"marketo": {"base_url": url}})
    assert s.marketo.base_url == expected
    assert s.marketo.identity == expected + "/identity"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"limits": {"import_slots": 11}}, "limits.import_slots"),
        ({"limits": {"calls_per_20s": "many"}}, "limits.calls_per_20s"),
        ({"polling": {"min_interval_s": -1}}, "polling.min_interval_s"),
        ({"marketo": {"base_url": "ftp//nope"}}, "marketo.base_url"),
        ({"limits": {"no_such_key": 1}}, "limits.no_such_key"),
        ({"routes": [{"name": "pm", "kind": "program_members"}]}, "routes.0"),
    ],
)
def test_invalid_setting_names_the_key(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, overrides)
    assert info.value.key == key


def test_missing_client_id_secret_and_secret_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"marketo": {"client_secret": "x"}}).marketo.secret()
    assert info.value.key == "marketo.client_id"
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"marketo": {"client_id": "id"}}).marketo.secret()
    assert info.value.key == "marketo.client_secret"
    secret_file = write(tmp_path / "secret", "s3cr3t-value\n")
    s = load_settings(None, {"marketo": {"client_id": "id", "client_secret_file": str(secret_file)}})
    assert s.marketo.secret() == "s3cr3t-value"
    s = load_settings(
        None, {"marketo": {"client_id": "id", "client_secret_file": str(tmp_path / "missing")}}
    )
    with pytest.raises(ConfigError) as info:
        s.marketo.secret()
    assert info.value.key == "marketo.client_secret_file"


async def test_cli_bad_setting_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEADFLOW_LIMITS__IMPORT_SLOTS", "zero")
    assert await cli(["status"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        (
            "leadflow: invalid setting limits.import_slots: Input should be a valid integer, "
            "unable to parse string as an integer (env LEADFLOW_LIMITS__IMPORT_SLOTS)"
        )
    ]


async def test_cli_missing_config_file_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli(["status", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "config: file" in capsys.readouterr().err


async def test_cli_bad_toml_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "bad.toml", "[limits\n")
    assert await cli(["status", "--config", str(cfg)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


async def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ["run", "status", "submit", "retry", "simulator", "demo", "migrate"]:
        assert await cli([command, "--help"]) == 0
        assert "usage: leadflow " + command in capsys.readouterr().out
