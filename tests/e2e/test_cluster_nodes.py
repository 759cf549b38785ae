"""Three ``leadflow run`` nodes (real processes) on one PostgreSQL, sharing one folder.

The nodes share ``paths`` (inbox, work, results, archive) and ``store.url``; the simulator
plays the Marketo instance (two simulators play two instances in the last test). Every file ends with exactly one report; the instance's limits
hold across the nodes; SIGKILL of the node holding the lease mid-import: another node takes
over within ``daemon.lease_s`` plus one polling interval (measured and printed).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from e2e_support import (
    clean_env,
    events,
    get_json,
    reports,
    simulator,
    start_daemon,
    wait_for,
    write_config,
)
from postgres_support import PgServer

pytestmark = pytest.mark.e2e

LEASE_S = 2.0
POLL_MAX_S = 0.5  # write_config's polling.max_interval_s
FILES = 24


def node_config(tmp_path: Path, url: str, pg_url: str, node: str) -> Path:
    base = write_config(tmp_path, url, max_upload_bytes=9_500_000)
    text = base.read_text().replace(
        "[daemon]\n", f'[daemon]\nnode_id = "{node}"\nlease_s = {LEASE_S}\n', 1
    )
    text = text.replace("[limits]\n", "[limits]\nimport_slots = 10\n", 1)
    path = tmp_path / f"{node}.toml"
    path.write_text(text + f'\n[import]\npack = false\n[store]\nurl = "{pg_url}"\n')
    return path


def pg_rows(pg_url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return list(conn.execute(sql).fetchall())


def drop_files(inbox: Path) -> set[str]:
    names = set()
    for i in range(FILES):
        name = f"cluster-{i:02d}.csv"
        (inbox / name).write_text(
            "email,firstName\r\n" + "".join(f"c{i}-{r}@example.com,N{r}\r\n" for r in range(3))
        )
        names.add(name)
    return names


def test_three_nodes_one_lease_takeover_after_sigkill(tmp_path: Path, pg_url: str) -> None:
    # Imports last long enough (3 rows at 1 row/s, simulator time x10: 0.3 s each, 2 at a
    # time) for the kill to land while batches are at Marketo.
    toml = "rows_per_second = 1.0\n"
    with simulator(tmp_path, toml, time_scale=10) as url:
        configs = {n: node_config(tmp_path, url, pg_url, n) for n in ("n1", "n2", "n3")}
        logs = {n: tmp_path / f"{n}.log" for n in configs}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for n, config in configs.items():
                procs[n] = start_daemon(config, logs[n])
            assert wait_for(lambda: bool(pg_rows(
                pg_url, "SELECT holder FROM leases WHERE holder IS NOT NULL")), 30)
            names = drop_files(tmp_path / "var" / "inbox")
            # Every file prepared (files a killed node leaves ``received`` are adopted by
            # another node after 3 x lease_s: tests/integration/intake/test_intake_cluster.py)
            # and batches at Marketo: kill the holder mid-import.
            assert wait_for(lambda: pg_rows(
                pg_url, "SELECT COUNT(*) FILTER (WHERE status <> 'received'), COUNT(*) FROM files"
            ) == [(FILES, FILES)], 30)
            assert wait_for(lambda: bool(pg_rows(
                pg_url, "SELECT 1 FROM uploads WHERE status IN ('submitted', 'importing')")), 30)
            [(holder, epoch)] = pg_rows(pg_url, "SELECT holder, epoch FROM leases")
            procs[holder].send_signal(signal.SIGKILL)
            killed_at = time.time()  # the nodes stamp acquired_at with this same clock
            procs[holder].wait(5)

            def taken_over() -> bool:
                rows = pg_rows(pg_url, f"SELECT holder FROM leases WHERE epoch > {int(epoch)}")
                return bool(rows) and rows[0][0] != holder

            assert wait_for(taken_over, 30)
            [(acquired_at,)] = pg_rows(pg_url, "SELECT acquired_at FROM leases")
            takeover_s = float(acquired_at) - killed_at
            print(f"takeover after SIGKILL of the lease holder: {takeover_s:.2f} s "
                  f"(lease_s {LEASE_S}, polling interval {POLL_MAX_S})")
            assert takeover_s <= LEASE_S + POLL_MAX_S

            assert wait_for(lambda: all_reported(tmp_path / "var" / "results", names), 45), {
                n: procs[n].poll() for n in procs}
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                proc.wait(20)
        stats = next(iter(get_json(f"{url}/_sim/stats")["instances"].values()))
    found = reports(tmp_path / "var" / "results")
    assert all(len(v) == 1 for v in found.values()), "exactly one report per file"
    assert all(r[0]["status"] == "complete" for r in found.values())
    assert stats["peak_queued_or_importing"] <= 10
    assert stats["peak_calls_per_window"] <= 100
    assert "606" not in stats["errors"]
    # Only lease holders submitted: every import_submitted line comes from a node while it
    # held the lease, and the killed node's uncertain submits (if any) were logged.
    lines = {n: events(log) for n, log in logs.items()}
    submitters = {n for n, evs in lines.items() if any(e["event"] == "import_submitted"
                                                       for e in evs)}
    takeovers = {n for n, evs in lines.items() if any(e["event"] == "lease_takeover"
                                                      for e in evs)}
    assert submitters and submitters <= takeovers
    # Nothing was imported twice, except uploads whose create call the kill made uncertain:
    # the new holder logged each (upload_reaped) and sent it again. pack = false: one
    # Marketo batch per file.
    reaped = {e["upload_id"] for evs in lines.values() for e in evs
              if e["event"] == "upload_reaped"}
    print(f"batches at Marketo: {len(stats['batches'])} for {FILES} files; "
          f"uploads reaped after the kill: {len(reaped)}")
    assert FILES <= len(stats["batches"]) <= FILES + len(reaped)
    # Nodes that never held the lease never talked to Marketo (no token, no call): they
    # prepared files with the catalogue the holder published.
    followers = set(lines) - takeovers
    for n in followers:
        assert not [e for e in lines[n] if e["event"] in ("token_refreshed", "api_call")], n


def start_node(config: Path, log: Path, name: str) -> subprocess.Popen[bytes]:
    """``leadflow run`` whose PostgreSQL connections carry ``application_name`` = ``name``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, env={**clean_env(), "PGAPPNAME": name},
        )


def all_reported(results: Path, names: set[str]) -> bool:
    try:  # a report being written lives in a .tmp folder, renamed once whole
        return set(reports(results)) == names
    except (FileNotFoundError, ValueError):
        return False


def check_one_report_each(results: Path, names: set[str]) -> None:
    found = reports(results)
    assert set(found) == names
    assert all(len(v) == 1 for v in found.values()), "exactly one report per file"
    assert all(r[0]["status"] == "complete" for r in found.values())


def test_a_node_cut_off_from_postgresql_stops_and_rejoins_as_follower(
    tmp_path: Path, pg_url: str
) -> None:
    with simulator(tmp_path, "rows_per_second = 1.0\n", time_scale=10) as url:
        configs = {n: node_config(tmp_path, url, pg_url, n) for n in ("n1", "n2")}
        logs = {n: tmp_path / f"{n}.log" for n in configs}
        procs = {"n1": start_node(configs["n1"], logs["n1"], "n1")}
        try:
            assert wait_for(lambda: pg_rows(pg_url, "SELECT holder FROM leases")
                            == [("n1",)], 30)
            procs["n2"] = start_node(configs["n2"], logs["n2"], "n2")
            names = drop_files(tmp_path / "var" / "inbox")
            assert wait_for(lambda: bool(pg_rows(
                pg_url, "SELECT 1 FROM uploads WHERE status IN ('submitted', 'importing')")), 30)
            # Cut n1 off: every connection it opens is terminated, for 2 x lease_s.
            cut_until = time.monotonic() + 2 * LEASE_S
            cut_at = time.time()

            def cut() -> None:
                while time.monotonic() < cut_until:
                    pg_rows(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                    " WHERE application_name = 'n1'")
                    time.sleep(0.02)

            cutter = threading.Thread(target=cut)
            cutter.start()
            assert wait_for(lambda: pg_rows(pg_url, "SELECT holder FROM leases")
                            == [("n2",)], 30)
            [(expired_at,)] = pg_rows(pg_url, "SELECT acquired_at FROM leases")
            cutter.join()
            assert wait_for(lambda: all_reported(tmp_path / "var" / "results", names), 45)
            # n1 is back as a follower: it beats again, n2 keeps the lease.
            assert wait_for(lambda: bool(pg_rows(
                pg_url, f"SELECT 1 FROM nodes WHERE node_id = 'n1' AND heartbeat_at > {time.time()}"
            )), 10)
            assert procs["n1"].poll() is None
            assert pg_rows(pg_url, "SELECT holder FROM leases") == [("n2",)]
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                proc.wait(20)
    check_one_report_each(tmp_path / "var" / "results", names)
    n1, n2 = events(logs["n1"]), events(logs["n2"])
    assert [e for e in n1 if e["event"] == "lease_lost"], "n1 noticed it lost the lease"
    # No two nodes ever submitted at once: n1 sent nothing after n2 took the lease over.
    n2_took = min(e["timestamp"] for e in n2 if e["event"] == "lease_acquired")
    late = [e for e in n1 if e["event"] == "import_submitted" and e["timestamp"] >= n2_took]
    assert late == []
    assert cut_at < expired_at


def test_postgresql_restarting_under_the_nodes_loses_nothing(
    tmp_path: Path, pg_server: PgServer, pg_url: str
) -> None:
    if pg_server.data_dir is None:
        pytest.skip("LEADFLOW_TEST_POSTGRES_URL: the tests do not restart a server they share")
    with simulator(tmp_path, "rows_per_second = 1.0\n", time_scale=10) as url:
        configs = {n: node_config(tmp_path, url, pg_url, n) for n in ("n1", "n2")}
        logs = {n: tmp_path / f"{n}.log" for n in configs}
        procs = {n: start_daemon(c, logs[n]) for n, c in configs.items()}
        try:
            assert wait_for(lambda: bool(pg_rows(
                pg_url, "SELECT holder FROM leases WHERE holder IS NOT NULL")), 30)
            # Both nodes are up (a node that cannot reach the store at start exits 1).
            assert wait_for(lambda: len(pg_rows(pg_url, "SELECT 1 FROM nodes")) == 2, 30)
            names = drop_files(tmp_path / "var" / "inbox")
            assert wait_for(lambda: bool(pg_rows(
                pg_url, "SELECT 1 FROM uploads WHERE status IN ('submitted', 'importing')")), 30)
            pg_server.restart()
            assert wait_for(lambda: all_reported(tmp_path / "var" / "results", names), 45)
            assert all(p.poll() is None for p in procs.values()), "both nodes still run"
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                proc.wait(20)
    check_one_report_each(tmp_path / "var" / "results", names)
    lines = [e for log in logs.values() for e in events(log)]
    assert not [e for e in lines if e["event"] == "daemon_crashed"]


# --- two Marketo instances shared by three nodes -------------------------------------------

#: Each simulator instance: its credentials and the ``calls_per_20s`` leadflow must keep to.
INSTANCES = {
    "prod": {"client_id": "prod-client-id", "client_secret": "prod-secret-value",
             "calls_per_20s": 30},
    "sandbox": {"client_id": "sandbox-client-id", "client_secret": "sandbox-secret-value",
                "calls_per_20s": 20},
}
#: Simulated seconds per real second: Marketo's 20-s window is 2 s here.
TIME_SCALE = 10.0
#: route -> the instance it names; files at the inbox root go to the first (prod).
ROUTE_OF = {"webinar": "prod", "webinar-test": "sandbox"}


def two_instance_config(tmp_path: Path, urls: dict[str, str], pg_url: str, node: str) -> Path:
    """A node's settings: the shared folders and store, both instances, a route for each."""
    var = tmp_path / "var"
    tables = []
    for name, inst in INSTANCES.items():
        tables.append(f"""
[[instances]]
name = "{name}"
base_url = "{urls[name]}"
client_id = "{inst['client_id']}"
client_secret = "{inst['client_secret']}"
retry_base_s = 0.05
retry_max_s = 0.5
[instances.limits]
import_slots = 10
max_upload_bytes = 9500000
calls_per_20s = {inst['calls_per_20s']}
rate_window_s = {20.0 / TIME_SCALE}
""")
    routes = "".join(f'\n[[routes]]\nname = "{r}"\ninstance = "{i}"\npack = false\n'
                     for r, i in ROUTE_OF.items())
    path = tmp_path / f"{node}.toml"
    path.write_text(f"""
[paths]
inbox = "{var / 'inbox'}"
work = "{var / 'work'}"
archive = "{var / 'archive'}"
rejected = "{var / 'rejected'}"
results = "{var / 'results'}"
database = "{var / 'leadflow.db'}"
[polling]
min_interval_s = 0.1
max_interval_s = 0.5
[intake]
stable_s = 0.1
rescan_interval_s = 0.2
[daemon]
node_id = "{node}"
lease_s = {LEASE_S}
idle_tick_s = 0.1
shutdown_grace_s = 1.0
results_retry_s = 0.2
queue_full_backoff_s = 0.2
[import]
pack = false
[store]
url = "{pg_url}"
[log]
format = "json"
{''.join(tables)}{routes}""")
    (var / "inbox").mkdir(parents=True, exist_ok=True)
    return path


def drop_files_for_both(inbox: Path) -> dict[str, tuple[str, set[str]]]:
    """Files at the root (prod) and in each route's folder: ``{name: (instance, emails)}``."""
    made: dict[str, tuple[str, set[str]]] = {}
    places = [("", "prod", 4), ("webinar", "prod", 8), ("webinar-test", "sandbox", 12)]
    for folder, instance, count in places:
        for i in range(count):
            name = f"{folder or 'root'}-{i:02d}.csv"
            emails = {f"{folder or 'root'}-{i}-{r}@example.com" for r in range(3)}
            target = inbox / folder / name if folder else inbox / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("email,firstName\r\n" + "".join(f"{e},N\r\n" for e in sorted(emails)))
            made[name] = (instance, emails)
    return made


def test_three_nodes_two_instances_keep_each_instance_within_its_limits(
    tmp_path: Path, pg_url: str
) -> None:
    """Issue 17: three nodes, one PostgreSQL, two simulator instances, a shared inbox."""
    started = time.monotonic()
    sims: dict[str, Any] = {}
    urls: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for name, inst in INSTANCES.items():
            folder = tmp_path / f"sim-{name}"
            folder.mkdir()
            toml = (f'client_id = "{inst["client_id"]}"\n'
                    f'client_secret = "{inst["client_secret"]}"\nrows_per_second = 1.0\n')
            urls[name] = stack.enter_context(simulator(folder, toml, time_scale=TIME_SCALE))
        configs = {n: two_instance_config(tmp_path, urls, pg_url, n) for n in ("n1", "n2", "n3")}
        logs = {n: tmp_path / f"{n}.log" for n in configs}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for n, config in configs.items():
                procs[n] = start_daemon(config, logs[n])
            assert wait_for(lambda: len(pg_rows(
                pg_url, "SELECT instance FROM leases WHERE holder IS NOT NULL")) == 2, 30)
            made = drop_files_for_both(tmp_path / "var" / "inbox")
            assert wait_for(lambda: all_reported(tmp_path / "var" / "results", set(made)), 45), {
                n: procs[n].poll() for n in procs}
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                proc.wait(20)
        for name, url in urls.items():
            sims[name] = {
                "stats": next(iter(get_json(f"{url}/_sim/stats")["instances"].values())),
                "leads": {lead["email"] for lead in get_json(f"{url}/_sim/leads")},
                "requests": get_json(f"{url}/_sim/requests"),
            }
    print(f"three nodes, two instances, {len(made)} files: {time.monotonic() - started:.1f} s")
    # Every file ends with exactly one report, complete, naming its instance.
    check_one_report_each(tmp_path / "var" / "results", set(made))
    found = reports(tmp_path / "var" / "results")
    for name, (instance, emails) in made.items():
        assert found[name][0]["instance"] == instance, name
        other = "sandbox" if instance == "prod" else "prod"
        assert emails <= sims[instance]["leads"], name  # in the right simulator ...
        assert not emails & sims[other]["leads"], name  # ... and only there
    for name, inst in INSTANCES.items():
        stats = sims[name]["stats"]
        print(f"{name}: peak queued-or-importing {stats['peak_queued_or_importing']}, "
              f"peak calls per 20 s {stats['peak_calls_per_window']} "
              f"(setting {inst['calls_per_20s']}), calls {stats['calls_total']}")
        assert stats["peak_queued_or_importing"] <= 10, name
        assert stats["peak_calls_per_window"] <= inst["calls_per_20s"], name
        assert "606" not in stats["errors"], (name, stats["errors"])
        # Credentials never cross: identity heard only this instance's client id, granted.
        identity = [r for r in sims[name]["requests"] if r["endpoint"] == "identity"]
        assert identity and {r["client_id"] for r in identity} == {inst["client_id"]}, name
        assert {r["status"] for r in identity} == {200}, name
    lines = [e for log in logs.values() for e in events(log)]
    assert not [e for e in lines if e["event"] == "daemon_crashed"]
    # Every submit line names the instance its files belong to.
    submitted = [e for e in lines if e["event"] == "import_submitted"]
    assert {e["instance"] for e in submitted} == set(INSTANCES)
    for e in submitted:
        assert {made[f][0] for f in e["file_names"]} == {e["instance"]}, e
