"""Issue 13, "A month in minutes": one daemon lives through thirty days of operations.

A real ``leadflow run`` process works against the simulator (a real process, clock sped up
ten times and jumped a day at a time over its admin API) while, seeded and in order:

- a lead file arrives every simulated day (some with bad rows), and the test waits until the
  daemon claimed it before the next day begins;
- day 3: another integration fills Marketo's queue (6 standing foreign jobs and 4 more), so
  our upload meets 1016; days 3 to 5 it also spends calls of the shared rate window (30
  describe calls a day);
- day 8: a route is added to the settings file and the daemon reloaded (SIGHUP); files of
  days 8 to 12 are dropped in its folder and must carry its ``listId``;
- day 14: the secret is rotated at Marketo, the token dies with the day, the daemon pauses on
  the 401 and resumes, without a restart, once ``client_secret_file`` holds the new secret;
- day 18: Marketo answers nothing but 503 (identity 502) for an hour of simulated time;
- day 22: the daemon is SIGKILLed with uploads under way and restarted a day and a half later
  (its wall clock moves on by ~36 h, to 12 s before America/Chicago midnight), when the
  daily quota is used up: it pauses on 607 until its midnight, Marketo's day rolls over too;
- the restart's first retention sweep expires the archived sources older than
  ``retention.archive_days = 0.75``; the sources archived after it stay.

At the end: every file has exactly one report with the right status, row counts and route;
every good row is in the simulator's lead store; Marketo's limits were never exceeded
(queue <= 10 with foreign jobs, our calls <= ``limits.calls_per_20s`` per window, no 606, a
1016 only while foreign jobs held places); nothing crashed and no secret leaked.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from reliability_checks import (
    assert_leads_arrived,
    assert_never_crashed,
    assert_no_secrets,
    assert_one_report_each,
    assert_repeats_bounded_and_logged,
    assert_reports_match_simulator,
    db_rows,
    events_named,
)
from reliability_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    Leadflow,
    SimulatorProcess,
    daemon_settings,
    require_module,
    toml_dumps,
)
from reliability_inputs import LeadFile, write_lead_file
from reliability_scenarios import CHICAGO, seconds_to_chicago_midnight

DAY_S = 86_400.0
#: The simulator runs this many times faster than real time between the day jumps.
TIME_SCALE = 10.0
#: Our share of the calls per rate window; the simulator allows Marketo's 100 for everyone.
CALLS_PER_WINDOW = 40
#: Marketo's rate window (20 simulated seconds) in real seconds; the daemon is told so.
WINDOW_REAL_S = 20.0 / TIME_SCALE
#: Real seconds between the daemon's restart and its America/Chicago midnight.
BEFORE_MIDNIGHT_S = 12.0
NEW_SECRET = "rel-ROTATED-7a1e4c9b"
ROUTE: dict[str, Any] = {"name": "webinar", "list_id": 1001}
FOREIGN_QUERY = "integration"


def wait_for(check: Callable[[], Any], what: str, proc: Any, lf: Leadflow,
             timeout: float = 30.0) -> Any:
    """Poll ``check`` while the daemon works, until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        assert proc.poll() is None, ("the daemon exited", lf.stderr_text()[-3000:])
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def refused_at_least(sim: SimulatorProcess, count: int) -> Callable[[], bool]:
    """A check: the simulator answered 503 at least ``count`` times."""
    return lambda: int(sim.stats()["errors"].get("503", 0)) >= count


def batches_beyond(lf: Leadflow, count: int) -> Callable[[], bool]:
    """A check: more than ``count`` of the daemon's uploads have a batchId."""
    return lambda: len(db_rows(lf, "SELECT id FROM uploads WHERE batch_id IS NOT NULL")) > count


def run_events(lf: Leadflow, name: str) -> list[dict[str, Any]]:
    """Lines named ``name`` of the daemon's current run."""
    path = lf.logs / f"run-{lf.runs:03d}.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if f'"{name}"' in line:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == name:
                out.append(event)
    return out


def foreign_calls(sim: SimulatorProcess, count: int) -> None:
    """Another integration's calls: ``count`` describes, with its own token."""
    query = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                    "client_secret": CLIENT_SECRET})
    with urllib.request.urlopen(f"{sim.url}/identity/oauth/token?{query}", timeout=10) as r:
        token = json.loads(r.read())["access_token"]
    for _ in range(count):
        request = urllib.request.Request(f"{sim.url}/rest/v1/leads/describe.json?"
                                         f"{FOREIGN_QUERY}=crm-sync")
        request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


def log_time(event: dict[str, Any]) -> float:
    """Epoch seconds of a log line's ``timestamp`` (the real clock, not the shifted one)."""
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


def our_peak_per_window(requests: list[dict[str, Any]], window_s: float) -> int:
    """Most calls of ours (identity and the foreign integration's left out) in one window."""
    times = sorted(r["t"] for r in requests if r["endpoint"] != "identity"
                   and FOREIGN_QUERY not in r.get("query_keys", []))
    peak, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window_s:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


@pytest.mark.timeout(180)
@pytest.mark.xdist_group("reliability-month")
def test_a_month_of_operations(tmp_path: Path) -> None:
    require_module("orchestrator.intake")
    started = time.monotonic()
    rng = random.Random(1301)
    sim = SimulatorProcess(
        tmp_path / "sim",
        {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "seed": 1301,
         "rows_per_second": 50.0, "batch_retention_s": 45 * DAY_S,
         "faults": {"latency_s": 0.005, "latency_jitter_s": 0.02}},
        TIME_SCALE,
    ).start()
    # The daemon's wall clock starts 36 h before an America/Chicago midnight M; the restart
    # on day 22 moves it to BEFORE_MIDNIGHT_S before M (a day and a half "later").
    now = time.time()
    midnight = now + seconds_to_chicago_midnight(now) + DAY_S
    midnight = datetime.combine(datetime.fromtimestamp(midnight, CHICAGO).date(),
                                datetime.min.time(), CHICAGO).timestamp()
    first_offset = (midnight - 36 * 3600.0) - now
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(CLIENT_SECRET + "\n", encoding="utf-8")
    settings = daemon_settings(
        tmp_path / "lf", sim.url,
        limits={"calls_per_20s": CALLS_PER_WINDOW, "rate_window_s": WINDOW_REAL_S,
                "max_concurrent_calls": 5, "import_slots": 10},
        polling={"min_interval_s": 0.05, "max_interval_s": 0.2},
        retention={"archive_days": 0.75, "sweep_interval_s": 0.5},
    )
    del settings["marketo"]["client_secret"]
    settings["marketo"]["client_secret_file"] = str(secret_file)
    lf = Leadflow(tmp_path / "lf", settings, clock_offset_s=first_offset)
    sim_start = sim.get("/_sim/clock")["now"]
    made: list[LeadFile] = []
    routed: set[str] = set()
    figures: dict[str, Any] = {}
    try:
        proc = lf.start()
        wait_for(lambda: run_events(lf, "daemon_started"), "the start", proc, lf)
        pid = proc.pid
        staging = tmp_path / "staging"

        def drop(day: int, folder: Path, *, bad: bool = False) -> LeadFile:
            i = len(made)
            lead = write_lead_file(staging, f"day{day:02d}-{i:02d}.csv", tag="month", index=i,
                                   rows=5 + 2 * i, rng=rng, bad_every=4 if bad else 0)
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / lead.path.name
            os.replace(lead.path, target)  # one rename, as an operator's mv
            lead.path = target
            made.append(lead)
            return lead

        def claimed(lead: LeadFile) -> Callable[[], bool]:
            return lambda: not lead.path.exists()

        def reported(leads: list[LeadFile]) -> Callable[[], bool]:
            return lambda: {m.path.name for m in leads} <= set(lf.reports())

        for day in range(1, 31):
            folder = lf.inbox / ROUTE["name"] if 8 <= day <= 12 else lf.inbox
            if day == 3:  # another integration: 6 standing jobs, 4 more: the queue is full
                sim.patch_settings({"faults": {"foreign_standing_jobs": 6,
                                               "foreign_job_duration_s": 10.0}})
                sim.post("/_sim/foreign-jobs", {"count": 4, "duration_s": 10.0})
            if 3 <= day <= 5:
                foreign_calls(sim, 30)
            if day == 8:  # a route added to the settings file, then a reload
                settings["routes"] = [ROUTE]
                lf.config_path.write_text(toml_dumps(settings), encoding="utf-8")
                proc.send_signal(signal.SIGHUP)
                wait_for(lambda: run_events(lf, "settings_reloaded"), "the reload", proc, lf)
                wait_for(folder.is_dir, "the route's folder", proc, lf)
            if day == 14:  # the secret rotated at Marketo; the token dies with the day
                sim.patch_settings({"client_secret": NEW_SECRET})
                sim.advance_clock(DAY_S)
                lead = drop(day, folder)
                wait_for(lambda: run_events(lf, "auth_failed"), "the 401 pause", proc, lf)
                batches = len(db_rows(lf, "SELECT id FROM uploads WHERE batch_id IS NOT NULL"))
                fresh = secret_file.with_suffix(".new")
                fresh.write_text(NEW_SECRET + "\n", encoding="utf-8")
                os.replace(fresh, secret_file)
                wait_for(reported([lead]), "the report after the rotation", proc, lf)
                assert batches < len(db_rows(
                    lf, "SELECT id FROM uploads WHERE batch_id IS NOT NULL"))
                figures["auth_failed"] = len(run_events(lf, "auth_failed"))
                continue
            if day == 18:  # Marketo down for an hour
                down_from = sim.stats()["errors"].get("503", 0)
                sim.patch_settings({"faults": {"http_503_probability": 1.0}})
                lead = drop(day, folder, bad=True)
                wait_for(refused_at_least(sim, down_from + 8),
                         "calls refused during the outage", proc, lf)
                sim.advance_clock(3600.0)
                sim.patch_settings({"faults": {"http_503_probability": 0.0}})
                wait_for(reported([lead]), "the report after the outage", proc, lf)
                sim.advance_clock(DAY_S - 3600.0)
                continue
            if day == 22:  # killed under way; back a day and a half later, quota spent
                batches_before = len(db_rows(lf, "SELECT id FROM uploads "
                                                 "WHERE batch_id IS NOT NULL"))
                leads = [drop(day, folder, bad=k == 1) for k in range(3)]
                wait_for(batches_beyond(lf, batches_before), "an upload under way", proc, lf)
                assert lf.kill(proc) is None, lf.stderr_text()[-2000:]
                archived_before = {p.name for p in Path(settings["paths"]["archive"]).iterdir()}
                used = sim.stats()["quota_used_today"]
                sim.patch_settings({"daily_quota": max(1, used)})
                lf.clock_offset_s = midnight - BEFORE_MIDNIGHT_S - time.time()
                proc = lf.start()
                leads.append(drop(day, folder))  # work for sure, whatever was done before
                wait_for(lambda: run_events(lf, "quota_paused"), "the quota pause", proc, lf)
                # Marketo's day rolls over too (its quota is back at 50,000 for good).
                stats = sim.stats()
                sim.advance_clock(seconds_to_chicago_midnight(stats["now"]) + 1.0)
                sim.patch_settings({"daily_quota": 50_000})
                wait_for(reported(leads), "the reports after the quota day", proc, lf, 60.0)
                continue
            lead = drop(day, folder, bad=day % 5 == 2)
            wait_for(claimed(lead), f"day {day}'s file claimed", proc, lf)
            if day in (1, 2, 3):  # day 3: the queue is full of foreign jobs; kept at least one of them for the sweep after the restart
                wait_for(reported([lead]), f"day {day}'s report", proc, lf)
            if day == 3:  # the other integration's jobs stand for this day only
                sim.patch_settings({"faults": {"foreign_standing_jobs": 0}})
            sim.advance_clock(DAY_S)
            if 8 <= day <= 12:
                routed.add(lead.path.name)

        wait_for(reported(made), "every report", proc, lf, 60.0)
        left = sim_start + 30 * DAY_S - sim.get("/_sim/clock")["now"]
        sim.advance_clock(max(0.0, left))  # the month's last quiet days
        assert proc.poll() is None, lf.stderr_text()[-3000:]
        assert proc.pid != pid  # one restart, by the SIGKILL
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, lf.stderr_text()[-3000:]
        figures["real_s"] = round(time.monotonic() - started, 1)

        # --- every file has exactly one right report
        names = [m.path.name for m in made]
        by_name = {m.path.name: m for m in made}
        assert_never_crashed(lf)
        reports = assert_one_report_each(lf, names)
        for name, report in reports.items():
            expected = "partial" if by_name[name].bad else "complete"
            assert report["status"] == expected, (name, report["status"], report.get("error"))
            assert report["route"] == (ROUTE["name"] if name in routed else None), (name, report)
        totals = assert_reports_match_simulator(lf, sim, reports, by_name)
        repeats = assert_repeats_bounded_and_logged(lf, sim)

        # --- nothing lost, route options honoured
        checked = assert_leads_arrived(sim, made)
        for lead_file in made:
            for email in lead_file.good:
                (found,) = sim.get(f"/_sim/leads?email={urllib.parse.quote(email)}")
                expect = [ROUTE["list_id"]] if lead_file.path.name in routed else []
                assert found["listIds"] == expect, (lead_file.path.name, found)

        # --- Marketo's limits were never exceeded
        stats = sim.stats()
        errors = stats["errors"]
        requests = sim.requests()
        assert stats["peak_queued_or_importing"] <= 10, stats["peak_queued_or_importing"]
        # Ours <= 5 (limits.max_concurrent_calls) plus the foreign integration's one.
        assert stats["peak_concurrent_calls"] <= 6, stats["peak_concurrent_calls"]
        assert stats["peak_calls_per_window"] <= 100, stats["peak_calls_per_window"]
        ours = our_peak_per_window(requests, stats["rate_window_s"])
        assert ours <= CALLS_PER_WINDOW, ours
        assert "606" not in errors and "615" not in errors, errors
        foreign = [b for b in stats["batches"] if b["kind"] == "foreign"]
        assert foreign, "no foreign job ever held a place"
        for entry in requests:
            if entry.get("code") == "1016":
                holding = [b for b in foreign if b["created_at"] <= entry["t"]
                           and (b["finished_at"] is None or entry["t"] < b["finished_at"])]
                assert holding, ("a 1016 with no foreign job at Marketo", entry)

        # --- the secret rotation, the reload, the quota day
        assert errors.get("401", 0) >= 1, errors
        assert errors.get("607", 0) >= 1, errors
        # Log lines are stamped with the real clock; the daemon's midnight M came at the real
        # time M - offset. No call but refused ones between the pause and then.
        quota_paused = events_named(lf, "quota_paused")
        assert {e["resume_at"] for e in quota_paused} == {midnight}, quota_paused
        assert lf.clock_offset_s is not None
        paused_at = min(log_time(e) for e in quota_paused)
        after = [log_time(e) for e in events_named(lf, "api_call")
                 if log_time(e) > paused_at and e.get("code") != "607"]
        resumed_at = min(after)
        assert resumed_at >= midnight - lf.clock_offset_s, (paused_at, resumed_at)
        figures["quota_pause_real_s"] = round(resumed_at - paused_at, 1)

        # --- archives older than 0.75 days expired at the restart's sweep; later ones stay
        archive = {p.name for p in Path(settings["paths"]["archive"]).iterdir()}
        expired = db_rows(lf, "SELECT file_id, what, deleted FROM retention_deletions")
        expired_ids = {row["file_id"] for row in expired if row["what"] == "archive"}
        assert archived_before and not archived_before & archive, archived_before & archive
        for name, report in reports.items():
            gone = report["file_id"] in expired_ids
            moved = f"{report['file_id']}-{name}"
            assert gone == (moved in archived_before), (name, gone)
            assert (moved in archive) != gone, (name, gone)
        assert not list(lf.inbox.rglob("*.csv"))
        assert not [p for p in Path(settings["paths"]["work"]).rglob("*") if p.is_file()]

        assert_no_secrets(lf, sim, [current_token_of(sim), NEW_SECRET])
        figures.update({
            "files": len(made), "rows_checked": checked, **totals, **repeats,
            "simulated_days": round((stats["now"] - sim_start) / DAY_S, 1),
            "peak_queued_or_importing": stats["peak_queued_or_importing"],
            "peak_calls_per_window": stats["peak_calls_per_window"],
            "our_peak_calls_per_window": ours,
            "peak_concurrent_calls": stats["peak_concurrent_calls"],
            "errors": dict(sorted(errors.items())),
            "foreign_jobs": len(foreign), "tokens_minted": stats["tokens_minted"],
            "archives_expired": len(expired_ids),
        })
        print(json.dumps(figures))
    finally:
        lf.stop_all()
        sim.stop()


def current_token_of(sim: SimulatorProcess) -> str:
    """The live token (minted with the rotated secret)."""
    query = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                    "client_secret": NEW_SECRET})
    with urllib.request.urlopen(f"{sim.url}/identity/oauth/token?{query}", timeout=10) as r:
        return str(json.loads(r.read())["access_token"])

