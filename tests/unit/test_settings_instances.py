"""Settings for several Marketo instances: ``[[instances]]``, ``marketo.name``, ``routes[].instance``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from orchestrator.cli import cli
from orchestrator.errors import ConfigError
from orchestrator.settings import (
    InstanceSettings,
    LimitSettings,
    MarketoSettings,
    Settings,
    load_settings,
    reload_plan,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "leadflow.example.toml"

TWO_INSTANCES = """
[limits]
import_slots = 7

[[instances]]
name = "sandbox"
base_url = "https://111-AAA-111.mktorest.com/rest"
client_id = "sandbox-id"
client_secret = "sandbox-secret-value"
request_timeout_s = 15.0
[instances.limits]
import_slots = 2
calls_per_20s = 20
daily_call_budget = 2000
max_concurrent_calls = 2

[[instances]]
name = "production"
base_url = "https://222-BBB-222.mktorest.com"
identity_url = "https://222-BBB-222.mktorest.com/identity"
client_id = "production-id"
client_secret_file = "{secret_file}"
[instances.limits]
import_slots = 8
calls_per_20s = 45
daily_call_budget = 40000

[[routes]]
name = "webinar-test"
instance = "sandbox"

[[routes]]
name = "webinar"
instance = "production"
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def two_instances(tmp_path: Path, extra: str = "") -> Path:
    """A settings file with a sandbox and a production instance (and their secrets)."""
    secret = write(tmp_path / "production_secret", "production-secret-value\n")
    return write(tmp_path / "two.toml", TWO_INSTANCES.format(secret_file=secret) + extra)


def config_error(tmp_path: Path, text: str) -> ConfigError:
    """The ConfigError that loading ``text`` as a settings file raises."""
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path / "bad.toml", text))
    return info.value


def plain_values(value: Any) -> list[str]:
    """Every string a settings object holds, secrets revealed and paths as text."""
    if isinstance(value, BaseModel):
        return [text for key in type(value).model_fields for text in plain_values(getattr(value, key))]
    if isinstance(value, tuple | list):
        return [text for item in value for text in plain_values(item)]
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, str | Path):
        return [str(value)]
    return []


# --- one instance -------------------------------------------------------------------------


def test_a_single_marketo_table_is_one_instance_named_default(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "one.toml",
        '[marketo]\nbase_url = "https://123-ABC-456.mktorest.com"\nclient_id = "one-id"\n'
        'client_secret = "one-secret"\n[limits]\nimport_slots = 4\ncalls_per_20s = 30\n'
        '[[routes]]\nname = "webinar"\n',
    )
    settings = load_settings(cfg)
    (instance,) = settings.instances_in_force()
    assert isinstance(instance, InstanceSettings)
    assert instance.name == "default" and settings.marketo.name == "default"
    assert instance.base_url == "https://123-ABC-456.mktorest.com"
    assert instance.client_id == "one-id" and instance.secret() == "one-secret"
    assert instance.limits == settings.limits
    assert (instance.limits.import_slots, instance.limits.calls_per_20s) == (4, 30)
    assert settings.instance_names() == ("default",)
    # One instance: a route may leave its instance out, and the inbox root goes there too.
    assert settings.instance_of_route("webinar") == "default"
    assert settings.instance_of_route(None) == "default"
    copy = settings.for_instance("default")
    assert copy.marketo == instance and copy.limits == settings.limits
    assert copy.paths == settings.paths and copy.routes == settings.routes
    assert copy.instances == ()


def test_marketo_name_names_the_one_instance(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "named.toml",
        '[marketo]\nname = "emea"\nclient_id = "x"\n[[routes]]\nname = "fairs"\ninstance = "emea"\n',
    )
    settings = load_settings(cfg)
    assert settings.instance_names() == ("emea",)
    assert settings.instance_of_route("fairs") == "emea"
    assert settings.for_instance("emea").marketo.client_id == "x"


def test_one_instances_table_lets_routes_leave_the_instance_out(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "one.toml",
        '[[instances]]\nname = "only"\nclient_id = "only-id"\n[[routes]]\nname = "webinar"\n',
    )
    settings = load_settings(cfg)
    assert settings.instance_names() == ("only",)
    assert settings.instance_of_route("webinar") == "only"
    assert settings.instance_of_route(None) == "only"


# --- two instances ------------------------------------------------------------------------


def test_for_instance_gives_each_instance_its_own_endpoint_credentials_and_limits(
    tmp_path: Path,
) -> None:
    settings = load_settings(two_instances(tmp_path))
    assert settings.instance_names() == ("sandbox", "production")
    sandbox, production = settings.for_instance("sandbox"), settings.for_instance("production")

    assert isinstance(sandbox.marketo, InstanceSettings)
    assert sandbox.marketo.name == "sandbox"
    assert sandbox.marketo.base_url == "https://111-AAA-111.mktorest.com"  # /rest stripped
    assert sandbox.marketo.identity == "https://111-AAA-111.mktorest.com/identity"
    assert sandbox.marketo.client_id == "sandbox-id"
    assert sandbox.marketo.secret() == "sandbox-secret-value"
    assert sandbox.marketo.request_timeout_s == 15.0
    assert sandbox.limits == sandbox.marketo.limits == LimitSettings(
        import_slots=2, calls_per_20s=20, daily_call_budget=2000, max_concurrent_calls=2
    )

    assert production.marketo.name == "production"
    assert production.marketo.base_url == "https://222-BBB-222.mktorest.com"
    assert production.marketo.client_id == "production-id"
    assert production.marketo.secret() == "production-secret-value"  # from its file
    assert production.marketo.request_timeout_s == 60.0
    assert (production.limits.import_slots, production.limits.calls_per_20s) == (8, 45)
    assert production.limits.daily_call_budget == 40_000
    assert production.limits.max_concurrent_calls == 5  # the default, not sandbox's

    # The top-level [limits] is not an instance's: each copy carries its instance's.
    assert settings.limits.import_slots == 7
    # Everything that is not per instance is the same object in both copies.
    for copy in (sandbox, production):
        assert copy.paths == settings.paths and copy.routes == settings.routes
        assert copy.polling == settings.polling and copy.import_ == settings.import_
        assert copy.instances == (copy.marketo,)


def test_no_secret_of_one_instance_is_in_another_instances_copy(tmp_path: Path) -> None:
    settings = load_settings(two_instances(tmp_path))
    secret_file = str(tmp_path / "production_secret")
    sandbox = plain_values(settings.for_instance("sandbox"))
    production = plain_values(settings.for_instance("production"))
    assert "sandbox-secret-value" in sandbox and secret_file in production  # the helper sees them
    for text in ("production-id", secret_file, "https://222-BBB-222.mktorest.com"):
        assert text not in sandbox
    for text in ("sandbox-id", "sandbox-secret-value", "https://111-AAA-111.mktorest.com"):
        assert text not in production
    assert "production-secret-value" not in repr(settings.for_instance("production"))


def test_instance_of_route_and_the_plain_inbox(tmp_path: Path) -> None:
    settings = load_settings(two_instances(tmp_path))
    assert settings.instance_of_route("webinar-test") == "sandbox"
    assert settings.instance_of_route("webinar") == "production"
    # Files at the inbox root, outside every route folder: the first instance.
    assert settings.instance_of_route(None) == "sandbox"
    with pytest.raises(ConfigError) as info:
        settings.instance_of_route("gone")
    assert info.value.key == "routes"
    assert info.value.reason == "no route named 'gone'; known routes: webinar-test, webinar"


def test_for_instance_of_an_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    settings = load_settings(two_instances(tmp_path))
    with pytest.raises(ConfigError) as info:
        settings.for_instance("staging")
    assert info.value.key == "instances"
    assert info.value.reason == "no instance named 'staging'; known instances: sandbox, production"
    with pytest.raises(ConfigError):
        load_settings().for_instance("sandbox")


def test_a_missing_secret_names_the_instance(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path / "c.toml", '[[instances]]\nname = "eu"\nclient_id = "eu-id"\n')
    )
    with pytest.raises(ConfigError) as info:
        settings.for_instance("eu").marketo.secret()
    assert info.value.key == "instances.eu.client_secret"
    assert "[[instances]] table named 'eu'" in info.value.reason


def test_instances_from_the_environment_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_INSTANCES", json.dumps([
        {"name": "eu", "base_url": "https://333-CCC-333.mktorest.com", "client_id": "eu-id",
         "client_secret": "eu-secret", "limits": {"import_slots": 3}},
        {"name": "us", "client_id": "us-id", "client_secret": "us-secret"},
    ]))
    settings = load_settings(write(
        tmp_path / "env.toml", '[[routes]]\nname = "fairs"\ninstance = "eu"\n'
        '[[routes]]\nname = "shows"\ninstance = "us"\n'
    ))
    assert settings.instance_names() == ("eu", "us")
    eu = settings.for_instance("eu")
    assert eu.marketo.base_url == "https://333-CCC-333.mktorest.com"
    assert eu.marketo.secret() == "eu-secret" and eu.limits.import_slots == 3
    assert settings.for_instance("us").marketo.secret() == "us-secret"
    assert settings.instance_of_route("shows") == "us"


def test_environment_instances_replace_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = two_instances(tmp_path)
    # The variable replaces the file's [[instances]] as a whole (the later source wins).
    monkeypatch.setenv("LEADFLOW_INSTANCES", json.dumps([
        {"name": "sandbox", "client_id": "s"}, {"name": "production", "client_id": "p"},
    ]))
    settings = load_settings(cfg)
    assert settings.for_instance("production").marketo.client_id == "p"
    assert settings.for_instance("production").limits == LimitSettings()


def test_a_bad_instance_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADFLOW_INSTANCES", json.dumps([{"name": "EU"}]))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == "instances.0.name"
    assert "(env LEADFLOW_INSTANCES, a JSON list)" in info.value.reason


def test_the_examples_commented_instances_load(tmp_path: Path) -> None:
    """The two-instance example of config/leadflow.example.toml, uncommented, is valid."""
    text = EXAMPLE.read_text(encoding="utf-8")
    block = text[text.index("# [[instances]]\n# The instance's name"):]
    lines = [line[2:] for line in block.splitlines()
             if re.match(r"^# (\[|[a-z_]+ = )", line)]
    settings = load_settings(write(tmp_path / "example.toml", "\n".join(lines) + "\n"))
    assert settings.instance_names() == ("sandbox", "production")
    assert settings.for_instance("sandbox").limits.import_slots == 2
    assert settings.for_instance("production").limits.daily_call_budget == 20_000
    assert settings.instance_of_route("webinar") == "production"


# --- validation at load -------------------------------------------------------------------


def test_instance_names_must_be_unique(tmp_path: Path) -> None:
    error = config_error(
        tmp_path, '[[instances]]\nname = "eu"\n[[instances]]\nname = "us"\n[[instances]]\nname = "eu"\n'
    )
    assert error.key == "instances.2.name"
    assert error.reason == "two [[instances]] tables are named 'eu': names must be unique"


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('base_url = "https://123-ABC-456.mktorest.com"', "base_url"),
        ('client_id = "id"', "client_id"),
        ('client_secret = "s"', "client_secret"),
        ('client_secret_file = "/etc/leadflow/secret"', "client_secret_file"),
        ("request_timeout_s = 5.0", "request_timeout_s"),  # ignored otherwise: refused too
    ],
)
def test_marketo_and_instances_are_one_or_the_other(tmp_path: Path, line: str, key: str) -> None:
    error = config_error(tmp_path, f'[marketo]\n{line}\n[[instances]]\nname = "eu"\n')
    assert error.key == "marketo"
    assert error.reason.startswith(f"[marketo] sets {key} while [[instances]] are configured")
    assert "use one or the other" in error.reason


def test_marketo_from_the_environment_beside_instances_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped systemd unit sets LEADFLOW_MARKETO__CLIENT_SECRET_FILE."""
    monkeypatch.setenv("LEADFLOW_MARKETO__CLIENT_SECRET_FILE", "/run/credentials/x/secret")
    error = config_error(tmp_path, '[[instances]]\nname = "eu"\n')
    assert error.reason.startswith(
        "[marketo] sets client_secret_file (LEADFLOW_MARKETO__CLIENT_SECRET_FILE set in the "
        "environment) while [[instances]] are configured: use one or the other"
    )


def test_a_route_naming_an_unknown_instance(tmp_path: Path) -> None:
    error = config_error(tmp_path, (
        '[[instances]]\nname = "sandbox"\n[[instances]]\nname = "production"\n'
        '[[routes]]\nname = "webinar"\ninstance = "sandbox"\n'
        '[[routes]]\nname = "fairs"\ninstance = "prod"\n'
    ))
    assert error.key == "routes.1.instance"
    assert error.reason == (
        "route 'fairs' names instance 'prod', which is not configured; "
        "known instances: sandbox, production"
    )


def test_a_route_naming_another_instance_than_marketo(tmp_path: Path) -> None:
    error = config_error(tmp_path, '[[routes]]\nname = "webinar"\ninstance = "production"\n')
    assert error.key == "routes.0.instance"
    assert error.reason.endswith("known instances: default")


def test_with_two_instances_every_route_names_one(tmp_path: Path) -> None:
    error = config_error(tmp_path, (
        '[[instances]]\nname = "sandbox"\n[[instances]]\nname = "production"\n'
        '[[routes]]\nname = "webinar"\ninstance = "production"\n[[routes]]\nname = "fairs"\n'
    ))
    assert error.key == "routes.1.instance"
    assert error.reason == (
        "route 'fairs' names no instance: with 2 instances (sandbox, production) every route "
        "must name the one it imports into"
    )


@pytest.mark.parametrize("name", ["Production", "", "a" * 41, "eu west", "eu.west", "ü"])
def test_an_instance_name_is_lower_case_letters_digits_dash_underscore(
    tmp_path: Path, name: str
) -> None:
    error = config_error(tmp_path, f'[[instances]]\nname = "{name}"\n')
    assert error.key == "instances.0.name"
    assert f"instance name {name!r} must be 1 to 40 characters of lower-case a-z" in error.reason
    error = config_error(tmp_path, f'[marketo]\nname = "{name}"\n')
    assert error.key == "marketo.name"


def test_good_instance_names() -> None:
    for name in ("a", "eu-west_2", "x" * 40, "0"):
        assert MarketoSettings(name=name).name == name


def test_an_instances_table_needs_a_name(tmp_path: Path) -> None:
    error = config_error(tmp_path, '[[instances]]\nclient_id = "x"\n')
    assert error.key == "instances.0.name"
    assert error.reason.startswith("Field required")


async def test_cli_prints_one_line_and_exits_2_for_an_instance_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "c.toml", (
        '[[instances]]\nname = "sandbox"\n[[instances]]\nname = "production"\n'
        '[[routes]]\nname = "webinar"\n'
    ))
    assert await cli(["status", "--config", str(cfg)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [(
        "leadflow: invalid setting routes.0.instance: route 'webinar' names no instance: with "
        "2 instances (sandbox, production) every route must name the one it imports into"
    )]


# --- reload (SIGHUP) ----------------------------------------------------------------------


def test_reload_names_changed_instances_as_needing_a_restart(tmp_path: Path) -> None:
    running = load_settings(two_instances(tmp_path))
    text = (tmp_path / "two.toml").read_text(encoding="utf-8")
    edited = (
        text.replace("calls_per_20s = 45", "calls_per_20s = 40")
        .replace("sandbox-secret-value", "rotated-sandbox-secret")
        + '\n[[instances]]\nname = "staging"\nclient_id = "staging-id"\n'
    )
    new = load_settings(write(tmp_path / "edited.toml", edited))
    effective, changed, restart = reload_plan(running, new)
    assert set(restart) == {
        "instances.production.limits.calls_per_20s",
        "instances.sandbox.client_secret",
        "instances.staging",
    }
    assert changed == []
    assert effective.instances == running.instances
    assert "rotated-sandbox-secret" not in repr(restart)


def test_reload_of_the_same_instances_changes_nothing(tmp_path: Path) -> None:
    running = load_settings(two_instances(tmp_path))
    again = load_settings(two_instances(tmp_path))
    assert reload_plan(running, again) == (running, [], [])


def test_reload_names_a_reordered_instances_list(tmp_path: Path) -> None:
    """The first instance takes the inbox root's files: the order is a setting too."""
    first = '[[instances]]\nname = "a"\n[[instances]]\nname = "b"\n'
    swapped = '[[instances]]\nname = "b"\n[[instances]]\nname = "a"\n'
    running = load_settings(write(tmp_path / "1.toml", first))
    _, changed, restart = reload_plan(running, load_settings(write(tmp_path / "2.toml", swapped)))
    assert (changed, restart) == ([], ["instances"])


def test_reload_names_a_renamed_marketo_instance(tmp_path: Path) -> None:
    running = load_settings(write(tmp_path / "1.toml", '[marketo]\nclient_id = "x"\n'))
    new = load_settings(write(tmp_path / "2.toml", '[marketo]\nname = "emea"\nclient_id = "x"\n'))
    effective, _, restart = reload_plan(running, new)
    assert restart == ["marketo.name"]
    assert effective.instance_names() == ("default",)


def test_reload_keeps_routes_that_name_an_instance_only_a_restart_brings(tmp_path: Path) -> None:
    running = load_settings(two_instances(tmp_path))
    edited = two_instances(tmp_path).read_text(encoding="utf-8") + (
        '\n[[instances]]\nname = "staging"\n[[routes]]\nname = "trial"\ninstance = "staging"\n'
    )
    effective, changed, restart = reload_plan(
        running, load_settings(write(tmp_path / "edited.toml", edited))
    )
    assert effective.routes == running.routes
    assert "routes" not in changed
    assert set(restart) == {"instances.staging", "routes"}
    # The settings in force still agree with themselves.
    assert [effective.instance_of_route(r.name) for r in effective.routes] == [
        "sandbox", "production"
    ]


def test_reload_moves_a_route_between_running_instances(tmp_path: Path) -> None:
    running = load_settings(two_instances(tmp_path))
    moved = two_instances(tmp_path).read_text(encoding="utf-8").replace(
        'name = "webinar"\ninstance = "production"', 'name = "webinar"\ninstance = "sandbox"'
    )
    effective, changed, restart = reload_plan(
        running, load_settings(write(tmp_path / "moved.toml", moved))
    )
    assert (changed, restart) == (["routes"], [])
    assert effective.instance_of_route("webinar") == "sandbox"


def test_settings_default_has_no_instances() -> None:
    settings = Settings()
    assert settings.instances == ()
    assert settings.instance_names() == ("default",)
