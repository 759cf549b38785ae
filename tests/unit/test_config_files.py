"""config/: the example settings, the demo settings and the systemd unit cannot rot."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel

from orchestrator.demo import runner
from orchestrator.errors import ConfigError
from orchestrator.settings import (
    InstanceSettings,
    LimitSettings,
    Route,
    Settings,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "leadflow.example.toml"
DEMO = ROOT / "config" / "demo.toml"
SERVICE = ROOT / "config" / "leadflow.service"


def _section_text(text: str, header: str) -> str:
    """The lines of one ``[header]`` table (up to the next table header)."""
    match = re.search(rf"^\[{re.escape(header)}\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"[{header}] is missing from {EXAMPLE.name}"
    return match.group(1)


def _keys_in(section: str) -> set[str]:
    """Keys set or shown commented (``# key = ...``) in a section's text."""
    return set(re.findall(r"^#?\s*([a-z_0-9]+)\s*=", section, re.MULTILINE))


def test_example_loads_and_documents_the_true_defaults() -> None:
    example = load_settings(EXAMPLE)
    defaults = Settings()
    # The example sets the simulator's client id; everything else is a default.
    assert example.marketo.client_id == "leadflow-sim"
    skip = {"marketo": {"client_id"}}
    assert example.model_dump(exclude=skip) == defaults.model_dump(exclude=skip)


def test_example_enables_no_route_into_the_simulators_list() -> None:
    """Issue 13: copied to production, an enabled example route imports into a wrong list."""
    assert load_settings(EXAMPLE).routes == ()
    text = EXAMPLE.read_text(encoding="utf-8")
    assert not re.search(r"^\s*list_id\s*=\s*1001", text, re.MULTILINE)
    # The route keys are still documented, commented out.
    assert re.search(r"^# \[\[routes\]\]$", text, re.MULTILINE)


def test_every_setting_appears_in_the_example() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    missing: list[str] = []
    for name, field in Settings.model_fields.items():
        if name in ("routes", "instances"):
            continue
        section = field.alias or name
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel), name
        present = _keys_in(_section_text(text, section))
        missing += [f"{section}.{key}" for key in model.model_fields if key not in present]
    routes = text[text.index("[[routes]]"):]
    missing += [f"routes.{key}" for key in Route.model_fields if key not in _keys_in(routes)]
    instances = text[text.index("# [[instances]]"):]
    missing += [f"instances.{key}" for key in InstanceSettings.model_fields
                if key != "limits" and key not in _keys_in(instances)]
    instance_limits = instances[instances.index("# [instances.limits]"):]
    missing += [f"instances.limits.{key}" for key in LimitSettings.model_fields
                if key not in _keys_in(instance_limits)]
    assert not missing, f"not documented in {EXAMPLE.name}: {missing}"


def test_demo_toml_loads_with_fast_intervals_and_the_route() -> None:
    demo = load_settings(DEMO)
    assert demo.polling.max_interval_s <= 1.0
    assert demo.intake.stable_s < 1.0
    assert demo.route_for_folder("webinar") is not None
    assert demo.route_for_folder("webinar").list_id == 1001  # type: ignore[union-attr]
    assert demo.marketo.secret() == "leadflow-sim-secret"


def test_builtin_demo_defaults_match_demo_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "http://127.0.0.1:1"
    from_file = runner.demo_settings(tmp_path, url, small=False, config=DEMO, user={})
    monkeypatch.setattr(runner, "find_demo_config", lambda: None)
    builtin = runner.demo_settings(tmp_path, url, small=False, config=None, user={})
    assert builtin.model_dump() == from_file.model_dump()
    assert builtin.paths.inbox == tmp_path / "inbox"
    assert builtin.marketo.base_url == url


def test_demo_settings_resist_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A production LEADFLOW_CONFIG or secret in the shell must not leak into the demo."""
    prod = tmp_path / "prod.toml"
    prod.write_text('[paths]\ndatabase = "/nonexistent/prod.db"\n')
    monkeypatch.setenv("LEADFLOW_CONFIG", str(prod))
    monkeypatch.setenv("LEADFLOW_MARKETO__CLIENT_SECRET", "production-secret")
    monkeypatch.setenv("LEADFLOW_MARKETO__BASE_URL", "https://123-XYZ-999.mktorest.com")
    settings = runner.demo_settings(
        tmp_path / "d", "http://127.0.0.1:2", small=True, config=DEMO,
        user={"limits": {"import_slots": "4"}},
    )
    assert settings.paths.database == tmp_path / "d" / "leadflow.db"
    assert settings.marketo.secret() == "leadflow-sim-secret"
    assert settings.marketo.base_url == "http://127.0.0.1:2"
    assert settings.limits.import_slots == 4
    assert settings.limits.max_upload_bytes == runner.SMALL_MAX_UPLOAD_BYTES


def test_service_unit_runs_the_daemon_with_a_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unit = SERVICE.read_text(encoding="utf-8")
    directives = dict(
        line.split("=", 1) for line in unit.splitlines() if re.match(r"^[A-Z]\w*=", line)
    )
    assert directives["ExecStart"].endswith("leadflow run --config /etc/leadflow/leadflow.toml")
    assert directives["Restart"] == "on-failure"
    assert directives["User"] == "leadflow"
    assert directives["WorkingDirectory"] == "/var/lib/leadflow"
    secret_env = re.search(r"^Environment=(LEADFLOW_MARKETO__CLIENT_SECRET_FILE)=(\S+)$",
                           unit, re.MULTILINE)
    assert secret_env and secret_env.group(2).startswith("%d/")
    assert "LoadCredential=marketo_client_secret:" in unit
    # The variable the unit sets really is the one leadflow reads the secret file from.
    secret = tmp_path / "marketo_client_secret"
    secret.write_text("s3cret-from-file\n")
    monkeypatch.setenv(secret_env.group(1), str(secret))
    assert load_settings(EXAMPLE).marketo.secret() == "s3cret-from-file"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_service_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    unit = SERVICE.read_text(encoding="utf-8").replace("/opt/leadflow/bin/leadflow", "/bin/true")
    path = tmp_path / "leadflow.service"
    path.write_text(unit)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(path)], check=False, capture_output=True, text=True, timeout=30
    )
    complaints = [
        line for line in (done.stdout + done.stderr).splitlines()
        if "leadflow.service" in line and ("Unknown" in line or "Invalid" in line)
    ]
    assert not complaints, complaints
    assert done.returncode == 0, done.stderr


# --- issue 12.1 (restart limits) and 13.8 (who may drop files) ----------------------------


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None,
                                          comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(SERVICE.read_text(encoding="utf-8"))
    return parser


def _seconds(value: str) -> float:
    """A systemd time span (``10``, ``10s``, ``5min``, ``1h``) in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value.strip()):
        total += float(number) * units[unit]
    return total


def test_a_crash_loop_is_cut_off_by_start_limits() -> None:
    unit = _unit()
    service, section = unit["Service"], unit["Unit"]
    assert service["Restart"] == "on-failure"
    assert "2" in service["RestartPreventExitStatus"].split()  # a bad setting or folder
    restart_s = _seconds(service["RestartSec"])
    interval_s = _seconds(section["StartLimitIntervalSec"])
    burst = int(section["StartLimitBurst"])
    assert restart_s >= 5, "restarts back to back hammer Marketo's shared rate window"
    # The limit must be reachable: `burst` starts, RestartSec apart, fit in the interval;
    # otherwise systemd restarts forever.
    assert restart_s * (burst - 1) < interval_s
    # StartLimit* in [Service] is the pre-230 spelling; they belong in [Unit].
    assert not {"StartLimitIntervalSec", "StartLimitBurst", "StartLimitInterval"} & set(service)


def test_the_umask_and_state_directory_let_the_group_reach_the_inbox() -> None:
    service = _unit()["Service"]
    umask = int(service["UMask"], 8)
    state_mode = int(service["StateDirectoryMode"], 8)
    # /var/lib/leadflow and the folders the daemon creates below it (var/, with umask) must
    # let the leadflow group through to the inbox, which the daemon makes 2770 itself.
    assert state_mode & 0o050 == 0o050
    assert not umask & 0o050
    assert umask & 0o007 == 0o007  # nothing for others


def test_unit_speaks_notify_reloads_with_hup_and_allows_the_setgid_drop_folders() -> None:
    """The daemon sends READY/WATCHDOG/STOPPING and reloads on SIGHUP (issue 16); the 2770
    drop folders need the setgid bit, which RestrictSUIDSGID=yes would refuse (issue 13.8)."""
    lines = {line.strip() for line in SERVICE.read_text(encoding="utf-8").splitlines()}
    assert {"Type=notify", "NotifyAccess=main", "WatchdogSec=60",
            "ExecReload=/bin/kill -HUP $MAINPID"} <= lines
    assert not any(line.startswith("RestrictSUIDSGID=yes") for line in lines)


# --- issue 17: a node of a deployment on PostgreSQL with two Marketo instances -------------

CLUSTER = ROOT / "config" / "cluster.example.toml"
DROP_IN = ROOT / "config" / "leadflow-cluster.conf"


def _drop_in_lines() -> set[str]:
    return {line.strip() for line in DROP_IN.read_text(encoding="utf-8").splitlines()}


def test_cluster_example_is_a_node_with_two_instances_on_postgresql(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(CLUSTER)
    assert settings.store.url is not None and settings.store.url.startswith("postgresql://")
    assert settings.instance_names() == ("production", "sandbox")
    assert all(route.instance in settings.instance_names() for route in settings.routes)
    # Each instance reads its secret from the credential the drop-in loads for it.
    credentials = dict(re.findall(r"^LoadCredential=(\w+):(\S+)$",
                                  DROP_IN.read_text(encoding="utf-8"), re.MULTILINE))
    for instance in settings.instances:
        assert instance.client_secret_file is not None
        assert instance.client_secret_file.parent == Path("/run/credentials/leadflow.service")
        assert instance.client_secret_file.name in credentials
    # Every folder of [paths] lies in the shared folder the drop-in mounts and lets it write.
    shared = next(line.split("=", 1)[1] for line in _drop_in_lines()
                  if line.startswith("ReadWritePaths="))
    assert f"RequiresMountsFor={shared}" in _drop_in_lines()
    for name in ("inbox", "work", "archive", "rejected", "results"):
        assert getattr(settings.paths, name).is_relative_to(shared), name
    # The shipped unit's [marketo] secret variable stops a node with [[instances]] at start;
    # the drop-in unsets it. Its node id variable is the setting.
    monkeypatch.setenv("LEADFLOW_MARKETO__CLIENT_SECRET_FILE", "/run/credentials/x")
    with pytest.raises(ConfigError, match=r"while \[\[instances\]\] are configured"):
        load_settings(CLUSTER)
    assert "UnsetEnvironment=LEADFLOW_MARKETO__CLIENT_SECRET_FILE" in _drop_in_lines()
    assert "LEADFLOW_MARKETO__CLIENT_SECRET_FILE" in SERVICE.read_text(encoding="utf-8")
    monkeypatch.delenv("LEADFLOW_MARKETO__CLIENT_SECRET_FILE")
    node = next(line for line in _drop_in_lines() if "LEADFLOW_DAEMON__NODE_ID=" in line)
    monkeypatch.setenv("LEADFLOW_DAEMON__NODE_ID", "app1")
    assert node == "Environment=LEADFLOW_DAEMON__NODE_ID=%H"
    assert load_settings(CLUSTER).daemon.node_id == "app1"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_cluster_drop_in_passes_systemd_analyze(tmp_path: Path) -> None:
    unit = SERVICE.read_text(encoding="utf-8").replace("/opt/leadflow/bin/leadflow", "/bin/true")
    (tmp_path / "leadflow.service").write_text(unit)
    drop_ins = tmp_path / "leadflow.service.d"
    drop_ins.mkdir()
    (drop_ins / "cluster.conf").write_text(DROP_IN.read_text(encoding="utf-8"))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "leadflow.service")],
        check=False, capture_output=True, text=True, timeout=30,
    )
    complaints = [
        line for line in (done.stdout + done.stderr).splitlines()
        if "cluster.conf" in line or ("leadflow.service" in line
                                      and ("Unknown" in line or "Invalid" in line))
    ]
    assert not complaints, complaints
    assert done.returncode == 0, done.stderr
