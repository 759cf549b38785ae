"""One daemon, two Marketo instances ("prod" and "sandbox"): two simulators, two credentials.

A daemon on SQLite with two ``[[instances]]`` against two simulators that know different
client ids and secrets; a route for each instance, and files at the inbox root (which go to
the first instance). Everything is checked from what each simulator received over HTTP, the
store, ``collect_status``, the reports and the log lines.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from daemon_sim import MakeSim, SimHandle
from structlog.testing import capture_logs as _capture_logs

from orchestrator.cli import cli
from orchestrator.daemon import Daemon
from orchestrator.models import FileStatus
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.timing import quota_day
from orchestrator.window.status import collect_status

SIM = {"rate_limit_calls": 100_000, "max_body_bytes": 4096, "rows_per_second": 200.0}
PROD = {"client_id": "prod-client-id", "client_secret": "prod-secret-value"}
SANDBOX = {"client_id": "sandbox-client-id", "client_secret": "sandbox-secret-value"}
ROUTES = [
    {"name": "webinar", "instance": "prod", "list_id": 1001},
    {"name": "webinar-test", "instance": "sandbox", "list_id": 1002},
]
#: file name -> (folder under the inbox, "" for the root; the instance it must reach)
FILES = {
    "root-a.csv": ("", "prod"),
    "root-b.csv": ("", "prod"),
    "prod-a.csv": ("webinar", "prod"),
    "prod-b.csv": ("webinar", "prod"),
    "sandbox-a.csv": ("webinar-test", "sandbox"),
    "sandbox-b.csv": ("webinar-test", "sandbox"),
    "sandbox-c.csv": ("webinar-test", "sandbox"),
}
ROWS = 30


def capture_logs() -> Any:
    return _capture_logs(processors=[structlog.contextvars.merge_contextvars])


def instance(name: str, sim: SimHandle, credentials: dict[str, str],
             calls_per_20s: int) -> dict[str, Any]:
    return {
        "name": name, "base_url": sim.url, **credentials,
        "retry_base_s": 0.01, "retry_max_s": 0.1, "token_refresh_margin_s": 0.0,
        "limits": {"max_upload_bytes": 4096, "calls_per_20s": calls_per_20s,
                   "max_concurrent_calls": 5, "rate_window_s": 1.0},
    }


def two_instance_settings(make_settings: Callable[..., Settings], prod: SimHandle,
                          sandbox: SimHandle, **overrides: Any) -> Settings:
    return make_settings(
        instances=[instance("prod", prod, overrides.pop("prod", PROD), 90),
                   instance("sandbox", sandbox, overrides.pop("sandbox", SANDBOX), 60)],
        routes=ROUTES,
        polling={"min_interval_s": 0.02, "max_interval_s": 0.2},
        daemon={"idle_tick_s": 0.05, "shutdown_grace_s": 0.5, "queue_full_backoff_s": 0.2,
                "queue_full_backoff_max_s": 1.0, "results_retry_s": 0.1},
        intake={"stable_s": 0.0, "rescan_interval_s": 0.05},
        **overrides,
    )


def drop(inbox: Path, names: dict[str, tuple[str, str]]) -> dict[str, set[str]]:
    """Write the lead files; return each file's emails."""
    emails: dict[str, set[str]] = {}
    for n, (name, (folder, _)) in enumerate(sorted(names.items())):
        rows = [f"{name.removesuffix('.csv')}-{i}@example.com" for i in range(ROWS)]
        target = inbox / folder / name if folder else inbox / name
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = ["email,firstName,lastName"] + [f"{e},First{i},Last{n}" for i, e in
                                                  enumerate(rows)]
        target.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
        emails[name] = set(rows)
    return emails


@asynccontextmanager
async def daemon_of(settings: Settings, **kwargs: Any) -> AsyncIterator[Daemon]:
    """The real daemon: it opens each instance's own client, intake and reporter."""
    async with Daemon(settings, handle_signals=False, **kwargs) as daemon:
        yield daemon


async def _until(check: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def identity_calls(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in requests if r["endpoint"] == "identity"]


def settings_file(settings: Settings) -> Path:
    """The settings as a TOML file for the CLI: paths, both instances, the routes."""
    lines = ["[paths]"] + [f'{k} = "{v}"' for k, v in settings.paths.model_dump().items()]
    for inst in settings.instances:
        lines += ["[[instances]]", f'name = "{inst.name}"', f'base_url = "{inst.base_url}"',
                  f'client_id = "{inst.client_id}"',
                  f'client_secret = "{inst.secret()}"']
    for route in ROUTES:
        lines += ["[[routes]]"] + [
            f"{k} = {json.dumps(v)}" for k, v in route.items()
        ]
    path = settings.paths.database.parent / "leadflow.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def report_of(settings: Settings, name: str) -> dict[str, Any]:
    found = [json.loads(p.read_text()) for p in settings.paths.results.glob("*/report.json")]
    mine = [r for r in found if r["file"] == name]
    assert len(mine) == 1, (name, [r["file"] for r in found])
    return mine[0]


async def test_two_instances_each_get_their_files_credentials_and_accounting(
    make_sim: MakeSim, make_settings: Callable[..., Settings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    prod = await make_sim(**SIM, **PROD)
    sandbox = await make_sim(**SIM, **SANDBOX)
    settings = two_instance_settings(make_settings, prod, sandbox)
    emails = drop(settings.paths.inbox, FILES)
    with capture_logs() as logs:
        async with daemon_of(settings) as daemon:
            await asyncio.wait_for(daemon.run(once=True), 60)
    # Each file's leads landed in the right simulator, and only there.
    landed = {"prod": {lead["email"] for lead in await prod.leads()},
              "sandbox": {lead["email"] for lead in await sandbox.leads()}}
    for name, (_, target) in FILES.items():
        other = "sandbox" if target == "prod" else "prod"
        assert emails[name] <= landed[target], name
        assert not emails[name] & landed[other], name
    assert landed["prod"] == set().union(*(emails[n] for n, f in FILES.items() if f[1] == "prod"))
    assert landed["sandbox"] == set().union(
        *(emails[n] for n, f in FILES.items() if f[1] == "sandbox"))
    # Credentials never cross: every identity call a simulator got carried its own client id
    # (and was granted: the secret was its own too); no call came with a foreign token.
    requests = {"prod": await prod.requests(), "sandbox": await sandbox.requests()}
    for name, expected in (("prod", PROD), ("sandbox", SANDBOX)):
        ids = identity_calls(requests[name])
        assert ids, name
        assert {r["client_id"] for r in ids} == {expected["client_id"]}, name
        assert {r["status"] for r in ids} == {200}, name
        assert {r["code"] for r in requests[name]} <= {None}, name  # no 601/602: no bad token
    # Each instance's calls are counted on its own: the store's usage per instance equals
    # the calls its simulator received (identity is not a REST call and is not counted).
    stats = {"prod": await prod.stats(), "sandbox": await sandbox.stats()}
    day = quota_day(time.time())
    async with Store.open(settings.paths.database) as store:
        usage = {n: await store.for_instance(n).usage_on(day) for n in ("prod", "sandbox")}
        calls = {n: await store.for_instance(n).calls_on(day) for n in ("prod", "sandbox")}
        status = await collect_status(store, settings, time.time())
        files = {f.name: f for f in await store.files_in(FileStatus.COMPLETE)}
    for name in ("prod", "sandbox"):
        received = stats[name]["calls_total"] - stats[name]["calls_by_endpoint"].get(
            "identity", 0)
        assert received > 0, name
        assert calls[name] == received, (name, usage[name], stats[name]["calls_by_endpoint"])
        assert sum(u["calls"] for u in usage[name].values()) == calls[name]
    views = {v["name"]: v for v in status["instances"]}
    assert list(views) == ["prod", "sandbox"]
    for name, sim in (("prod", prod), ("sandbox", sandbox)):
        assert views[name]["base_url"] == sim.url
        assert views[name]["calls_today"]["calls"] == calls[name]
        assert views[name]["calls_today"]["by_endpoint"] == usage[name]
    assert status["calls_today"] == views["prod"]["calls_today"]  # the first instance's
    # ``leadflow status --json`` shows the same, read from a settings file.
    capsys.readouterr()
    assert await cli(["status", "--json", "--config", str(settings_file(settings))]) == 0
    shown = {v["name"]: v for v in json.loads(capsys.readouterr().out)["instances"]}
    assert {n: v["calls_today"]["calls"] for n, v in shown.items()} == calls
    assert {n: v["base_url"] for n, v in shown.items()} == {"prod": prod.url,
                                                              "sandbox": sandbox.url}
    # Every file complete, stamped with its instance, and its report says which.
    assert set(files) == set(FILES)
    for name, (_, target) in FILES.items():
        assert files[name].instance == target, name
        report = report_of(settings, name)
        assert report["instance"] == target, name
        assert report["status"] == "complete"
    # The log lines of each instance's loops carry its name: every submit of a file of an
    # instance was logged with that instance, under a batchId its simulator handed out.
    batch_ids = {n: {b["batchId"] for b in stats[n]["batches"]} for n in ("prod", "sandbox")}
    submitted = [e for e in logs if e["event"] == "import_submitted"]
    assert submitted
    for line in submitted:
        owner = line.get("instance")
        assert owner in ("prod", "sandbox"), line
        assert {FILES[f][1] for f in line["file_names"]} == {owner}, line
        assert line["batch_id"] in batch_ids[owner], line
    assert {e["instance"] for e in submitted} == {"prod", "sandbox"}
    polled = [e for e in logs if e["event"] == "api_call" and e["endpoint"] == "import_status"]
    assert polled and all(e.get("instance") in ("prod", "sandbox") for e in polled)


@pytest.mark.parametrize("refused", ["prod", "sandbox"])
async def test_a_refused_secret_pauses_only_its_instance(
    make_sim: MakeSim, make_settings: Callable[..., Settings], refused: str
) -> None:
    sims = {"prod": await make_sim(**SIM, **PROD), "sandbox": await make_sim(**SIM, **SANDBOX)}
    await sims[refused].patch({"client_secret": "rotated"})  # our secret is refused there
    other = "sandbox" if refused == "prod" else "prod"
    settings = two_instance_settings(make_settings, sims["prod"], sims["sandbox"])
    emails = drop(settings.paths.inbox, FILES)
    theirs = {n for n, (_, target) in FILES.items() if target == other}
    mine = set(FILES) - theirs
    with capture_logs() as logs:
        async with daemon_of(settings, auth_retry_s=0.2) as daemon:
            task = asyncio.create_task(daemon.run())
            try:
                store = daemon.store

                async def complete() -> set[str]:
                    return {f.name for f in await store.files_in(FileStatus.COMPLETE)}

                async def others_done() -> bool:
                    assert not task.done(), task
                    return await complete() >= theirs

                # The other instance goes on importing while this one is paused.
                await _until(others_done)
                assert not await complete() & mine
                refused_sim = sims[refused]
                assert not await refused_sim.leads()
                statuses = {r["status"] for r in identity_calls(await refused_sim.requests())}
                assert statuses == {401}
                assert not [r for r in await refused_sim.requests()
                            if r["endpoint"] != "identity"]
                # Its files wait (taken, not rejected); the refusal names its identity URL.
                waiting = [f for f in await store.files_in(FileStatus.RECEIVED)
                           if f.name in mine]
                assert waiting
                assert all(f.instance == refused for f in waiting)
                errors = await store.recent_errors(5)
                assert [e["code"] for e in errors] == ["auth_failed"]
                assert f"{refused_sim.url}/identity/oauth/token" in errors[0]["message"]
                # The operator fixes the secret: the paused instance resumes on its own.
                await refused_sim.patch({"client_secret": (PROD if refused == "prod"
                                                           else SANDBOX)["client_secret"]})

                async def all_done() -> bool:
                    assert not task.done(), task
                    return await complete() == set(FILES)

                await _until(all_done)
            finally:
                daemon.stop()
                await asyncio.wait_for(task, 10)
    landed = {lead["email"] for lead in await sims[refused].leads()}
    assert landed == set().union(*(emails[n] for n in mine))
    paused = [e for e in logs if e["event"] == "work_paused"]
    resumed = [e for e in logs if e["event"] == "work_resumed"]
    assert [e.get("instance") for e in paused] == [refused]
    assert [e.get("instance") for e in resumed] == [refused]
    assert "daemon_crashed" not in [e["event"] for e in logs]
