"""The two soaks of issue 9, as functions the tests and ``bench/soak.py`` both call.

- `crash_soak`: the daemon is SIGKILLed at seeded random moments while files arrive, and
  restarted each time; ``run --once`` then drains. Nothing may be lost or doubled.
- `fault_soak`: every simulator fault at once, foreign jobs taking 0 to 8 of the queue's
  slots, and a daily quota that runs out shortly before America/Chicago midnight and resets
  at it (daemon and simulator share a shifted wall clock). Everything must complete within
  Marketo's limits, and the daemon must never crash.

Each returns a dict of figures; every assertion lives in `reliability_checks`.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from reliability_checks import (
    assert_leads_arrived,
    assert_never_crashed,
    assert_no_secrets,
    assert_one_report_each,
    assert_repeats_bounded_and_logged,
    assert_reports_match_simulator,
    assert_sources_moved_once,
    current_token,
    events_named,
)
from reliability_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    Leadflow,
    SimulatorProcess,
    daemon_settings,
)
from reliability_inputs import LeadFile, write_lead_file

CHICAGO = ZoneInfo("America/Chicago")


def _sim_config(seed: int, **extra: Any) -> dict[str, Any]:
    return {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "seed": seed, **extra}


def _drop_into(inbox: Path, lead: LeadFile) -> None:
    """Move a finished file into the inbox in one rename (as an operator's ``mv`` does)."""
    target = inbox / lead.path.name
    os.replace(lead.path, target)
    lead.path = target


def wait_for_event(lf: Leadflow, name: str, proc: Any, timeout: float = 20.0) -> None:
    """Wait until the daemon's current run logged ``name``."""
    log = lf.logs / f"run-{lf.runs:03d}.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and f'"{name}"'.encode() in log.read_bytes():
            return
        assert proc.poll() is None, ("the daemon exited", lf.stderr_text()[-3000:])
        time.sleep(0.01)
    raise AssertionError(f"no {name} within {timeout} s")


def crash_soak(
    workdir: Path,
    *,
    seed: int = 1130,
    files: int = 30,
    kills: int = 15,
    time_scale: float = 10.0,
    run_s: tuple[float, float] = (0.0, 0.8),
) -> dict[str, Any]:
    """Kill the daemon ``kills`` times while ``files`` files (one over the upload limit) flow.

    Each kill comes a seeded random ``run_s`` after the daemon logged ``daemon_started``
    (recovery, intake, uploads and polls are all under way then); the simulator adds 20 to
    120 ms of latency to every call so that kills land in the middle of calls.
    Small files have distinct row counts (3, 5, 7, ...) so the simulator's batches can be
    matched to uploads; some carry bad rows. Uploads are limited to 6,000 bytes and the
    simulator refuses bodies over 8,000 bytes, so the big file (about 16 KB) must be split.

    Returns:
        Figures: ``files``, ``kills``, ``uploads``, ``batches``, ``repeats``,
        ``resubmissions``, ``reaped``, ``rows_checked``, ``elapsed_s``.
    """
    started = time.monotonic()
    rng = random.Random(seed)
    sim = SimulatorProcess(
        workdir / "sim",
        _sim_config(seed, max_body_bytes=8000, rows_per_second=200.0, token_lifetime_s=360_000,
                    faults={"latency_s": 0.02, "latency_jitter_s": 0.1}),
        time_scale,
    ).start()
    lf = Leadflow(
        workdir / "lf",
        daemon_settings(
            workdir / "lf", sim.url,
            limits={"max_upload_bytes": 6000, "import_slots": 10, "calls_per_20s": 100,
                    "max_concurrent_calls": 5},
        ),
    )
    try:
        staging = workdir / "staging"
        made: list[LeadFile] = []
        for i in range(files - 1):
            rows = 3 + 2 * i
            bad_every = max(2, rows // 2) if i % 4 == 1 else 0
            made.append(write_lead_file(staging, f"crash-{i:03d}.csv", tag=f"crash{seed}",
                                        index=i, rows=rows, rng=rng, bad_every=bad_every))
        big = write_lead_file(staging, "crash-big-over-the-limit.csv", tag=f"crashbig{seed}",
                              index=999, rows=250, rng=rng)
        assert big.path.stat().st_size > 8000 * 2, big.path.stat().st_size
        made.append(big)
        digests = {m.path.name: hashlib.sha256(m.path.read_bytes()).hexdigest() for m in made}
        pending = list(made)
        rng.shuffle(pending)
        waves = max(1, (kills * 2) // 3)
        per_wave = -(-len(pending) // waves)
        for _ in range(kills):
            for _ in range(per_wave):
                if pending:
                    _drop_into(lf.inbox, pending.pop())
            proc = lf.start()
            wait_for_event(lf, "daemon_started", proc)
            time.sleep(rng.uniform(*run_s))
            code = lf.kill(proc)
            assert code is None, (f"the daemon exited by itself with {code}",
                                  lf.stderr_text()[-2000:])
        for lead in pending:
            _drop_into(lf.inbox, lead)
        drained = lf.run_once(timeout=55)
        assert drained.returncode == 0, (drained.returncode, drained.stderr[-3000:])

        assert_never_crashed(lf)
        reports = assert_one_report_each(lf, [m.path.name for m in made])
        assert_sources_moved_once(lf, [m.path.name for m in made], digests)
        by_name = {m.path.name: m for m in made}
        big_report = reports[big.path.name]
        assert len(big_report["uploads"]) >= 2, big_report
        assert big_report["status"] == "complete", big_report
        for name, report in reports.items():
            expected = "partial" if by_name[name].bad else "complete"
            assert report["status"] == expected, (name, report["status"], report.get("error"))
        totals = assert_reports_match_simulator(lf, sim, reports, by_name)
        checked = assert_leads_arrived(sim, made)
        repeats = assert_repeats_bounded_and_logged(lf, sim)
        minted = sim.stats()["tokens_minted"]
        token = current_token(sim)
        assert sim.stats()["tokens_minted"] == minted == 1, minted
        scanned = assert_no_secrets(lf, sim, [token])
        return {
            "files": len(made),
            "kills": kills,
            **repeats,
            "reaped": len(events_named(lf, "upload_reaped")),
            "rows_checked": checked,
            "rows_imported": totals.get("imported", 0),
            "files_scanned_for_secrets": scanned,
            "elapsed_s": round(time.monotonic() - started, 1),
        }
    finally:
        lf.stop_all()
        sim.stop()


def wait_for_calls(lf: Leadflow, proc: Any, calls: int, timeout: float) -> int:
    """Wait until the daemon's current run logged ``calls`` ``api_call`` lines, or ``timeout``.

    Returns:
        The calls its log shows (fewer when the governor held it back until the timeout).
    """
    log = lf.logs / f"run-{lf.runs:03d}.jsonl"
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        seen = log.read_bytes().count(b'"api_call"') if log.exists() else 0
        if seen >= calls:
            break
        assert proc.poll() is None, ("the daemon exited", lf.stderr_text()[-3000:])
        time.sleep(0.01)
    return seen


def crash_loop(
    workdir: Path,
    *,
    seed: int = 1212,
    files: int = 12,
    kills: int = 10,
    time_scale: float = 10.0,
    limit: int = 12,
    window_real_s: float = 2.0,
) -> dict[str, Any]:
    """Kill the daemon ``kills`` times in quick succession under load, then drain (issue 12.1).

    Marketo's rate window is 20 simulated seconds and the simulator runs ``time_scale`` times
    faster than real time, so the daemon is told the window is ``window_real_s`` real seconds
    (``limits.rate_window_s``) with ``limits.calls_per_20s = limit``; the simulator enforces
    the same ``limit`` (``606`` beyond). Polling is fast and the batches import slowly, so
    every run has calls to make at once: the batches left outstanding (recovery polls them),
    uploads to send, files to describe. Each run is killed once it logged a seeded number of
    calls (1 to 8, with 20 to 100 ms of latency per call, so others are in flight), or after
    ``window_real_s * 1.5`` if the governor held it back; then ``run --once`` drains.

    Returns:
        Figures: ``kills``, ``calls_per_window_peak`` (the simulator's, in 20 simulated
        seconds), ``limit``, ``errors``, ``calls_total``, ``calls_before_kill`` (per run),
        ``restored`` (runs that logged ``rate_window_restored``), ``elapsed_s``.
    """
    started = time.monotonic()
    rng = random.Random(seed)
    sim = SimulatorProcess(
        workdir / "sim",
        _sim_config(seed, rate_limit_calls=limit, rate_window_s=window_real_s * time_scale,
                    rows_per_second=2.0, token_lifetime_s=360_000,
                    faults={"latency_s": 0.02, "latency_jitter_s": 0.08}),
        time_scale,
    ).start()
    lf = Leadflow(
        workdir / "lf",
        daemon_settings(
            workdir / "lf", sim.url,
            limits={"calls_per_20s": limit, "rate_window_s": window_real_s,
                    "max_concurrent_calls": 5, "import_slots": 10},
            polling={"min_interval_s": 0.02, "max_interval_s": 0.1},
        ),
    )
    try:
        made = [
            write_lead_file(lf.inbox, f"loop-{i:03d}.csv", tag=f"loop{seed}", index=i,
                            rows=30 + 3 * i, rng=rng)
            for i in range(files)
        ]
        names = [m.path.name for m in made]
        before_kill: list[int] = []
        for _ in range(kills):
            proc = lf.start()
            wait_for_event(lf, "daemon_started", proc)
            before_kill.append(wait_for_calls(lf, proc, rng.randint(1, 8), window_real_s * 1.5))
            code = lf.kill(proc)
            assert code is None, (f"the daemon exited by itself with {code}",
                                  lf.stderr_text()[-2000:])
        drained = lf.run_once(timeout=50)
        assert drained.returncode == 0, (drained.returncode, drained.stderr[-3000:])
        assert_never_crashed(lf)
        reports = assert_one_report_each(lf, names)
        for name, report in reports.items():
            assert report["status"] == "complete", (name, report["status"], report.get("error"))
        stats = sim.stats()
        return {
            "kills": kills,
            "calls_per_window_peak": stats["peak_calls_per_window"],
            "limit": limit,
            "errors": dict(sorted(stats["errors"].items())),
            "calls_total": stats["calls_total"],
            "calls_before_kill": before_kill,
            "restored": len(events_named(lf, "rate_window_restored")),
            "elapsed_s": round(time.monotonic() - started, 1),
        }
    finally:
        lf.stop_all()
        sim.stop()


def seconds_to_chicago_midnight(now: float) -> float:
    """Seconds from ``now`` (epoch) to the next midnight America/Chicago."""
    local = datetime.fromtimestamp(now, CHICAGO)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), CHICAGO)
    return midnight.timestamp() - now


def fault_soak(
    workdir: Path,
    *,
    seed: int = 2026,
    files: int = 10,
    before_midnight_s: float = 12.0,
    daily_quota: int = 10,
    calls_per_20s: int = 60,
    timeout_s: float = 50.0,
) -> dict[str, Any]:
    """Run the daemon through every fault at once and a quota that runs out at midnight.

    The simulator's clock and the daemon's wall clock are both moved to
    ``before_midnight_s`` before the next America/Chicago midnight, so Marketo's quota day
    and the daemon's agree (docs/reference/marketo-api.md §6). The quota (``daily_quota`` calls)
    runs out first; once the simulator has answered ``607`` it is raised for the new day, which
    starts at midnight for both. Faults: 10% HTTP 5xx with HTML bodies, 5% each of 604, 608, 611 and
    713, 2% of dropped upload responses (and the first one for sure), tokens dying 3 s
    after they are minted though ``expires_in`` promises ``before_midnight_s + 4`` (so the
    first token is dead, yet not due for a refresh, when the quota pause ends), foreign jobs
    standing at a random 0 to 8 slots, changed every half second.

    Returns:
        Figures from the simulator's statistics and the daemon's logs.
    """
    started = time.monotonic()
    rng = random.Random(seed)
    now = time.time()
    until = seconds_to_chicago_midnight(now)
    if until < before_midnight_s + 5:  # really close to midnight: aim at the next one
        until += seconds_to_chicago_midnight(now + until + 1) + 1
    offset = until - before_midnight_s
    token_lifetime = int(before_midnight_s) + 4
    faults = {
        "http_500_probability": 0.034,
        "http_502_probability": 0.033,
        "http_503_probability": 0.033,
        "error_604_probability": 0.05,
        "error_608_probability": 0.05,
        "error_611_probability": 0.05,
        "error_713_probability": 0.05,
        "drop_upload_response_probability": 0.02,
        "drop_next_upload_responses": 1,
        # A token dies 3 s after it is minted, long before the client's refresh margin
        # (2 s before expires_in), and before the quota pause ends: a 602 is certain.
        "token_early_expiry_s": float(token_lifetime - 3),
    }
    sim = SimulatorProcess(
        workdir / "sim",
        _sim_config(seed, daily_quota=daily_quota, token_lifetime_s=token_lifetime,
                    rows_per_second=500.0,
                    faults=faults),
        1.0,
    ).start()
    sim.advance_clock(offset)
    lf = Leadflow(
        workdir / "lf",
        daemon_settings(
            workdir / "lf", sim.url,
            limits={"calls_per_20s": calls_per_20s, "max_concurrent_calls": 5,
                    "import_slots": 10},
            marketo={"retry_attempts": 8},
            # One job per file: enough calls for every fault to strike (packed, 10 small
            # files make 3 or 4 jobs; the crash soak runs with packing).
            **{"import": {"pack": False}},
        ),
        clock_offset_s=offset,
    )
    try:
        made = [
            write_lead_file(lf.inbox, f"fault-{i:03d}.csv", tag=f"fault{seed}", index=i,
                            rows=4 + 3 * i, rng=rng)
            for i in range(files)
        ]
        names = [m.path.name for m in made]
        proc = lf.start()
        quota_raised = False
        foreign_levels: list[int] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert proc.poll() is None, ("the daemon exited", lf.stderr_text()[-3000:])
            level = rng.randint(0, 8)
            foreign_levels.append(level)
            sim.patch_settings({"faults": {"foreign_standing_jobs": level,
                                           "foreign_job_duration_s": rng.uniform(0.1, 0.8)}})
            stats = sim.stats()
            if not quota_raised and stats["errors"].get("607"):
                sim.patch_settings({"daily_quota": 50_000})
                quota_raised = True
            if len(lf.reports()) >= len(names):
                break
            time.sleep(0.5)
        sim.patch_settings({"faults": {"foreign_standing_jobs": 0}})
        assert proc.poll() is None, ("the daemon exited", lf.stderr_text()[-3000:])
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        assert code == 0, (code, lf.stderr_text()[-3000:])

        assert_never_crashed(lf)
        reports = assert_one_report_each(lf, names)
        assert_sources_moved_once(lf, names)
        for name, report in reports.items():
            assert report["status"] == "complete", (name, report["status"], report.get("error"))
        by_name = {m.path.name: m for m in made}
        assert_reports_match_simulator(lf, sim, reports, by_name)
        checked = assert_leads_arrived(sim, made)
        repeats = assert_repeats_bounded_and_logged(lf, sim)

        stats = sim.stats()
        errors = stats["errors"]
        assert quota_raised and errors.get("607", 0) >= 1, errors
        paused = events_named(lf, "quota_paused")
        assert paused, "the daemon never paused for the quota"
        assert stats["peak_queued_or_importing"] <= 10, stats["peak_queued_or_importing"]
        assert stats["peak_calls_per_window"] <= calls_per_20s, stats["peak_calls_per_window"]
        assert stats["peak_concurrent_calls"] <= 5, stats["peak_concurrent_calls"]
        five_xx = sum(errors.get(c, 0) for c in ("500", "502", "503"))
        api_faults = sum(errors.get(c, 0) for c in ("604", "608", "611", "713"))
        assert five_xx > 0 and api_faults > 0, errors
        assert errors.get("dropped", 0) >= 1, errors
        token_lines = [
            (e.get("timestamp"), e.get("event"), e.get("code"), e.get("wait_s"))
            for e in lf.events()
            if e.get("event") in ("token_refreshed", "quota_paused", "daemon_started")
            or e.get("code") in ("602", "607")
        ]
        assert errors.get("602", 0) >= 1 and stats["tokens_minted"] >= 2, (
            errors, stats["tokens_minted"], token_lines)
        foreign = [b for b in stats["batches"] if b["kind"] == "foreign"]
        assert foreign, "no foreign job ever held a slot"
        assert repeats["resubmissions"] >= errors.get("dropped", 0), (repeats, errors)
        scanned = assert_no_secrets(lf, sim, [current_token(sim)])
        return {
            "files": len(made),
            **repeats,
            "rows_checked": checked,
            "peak_queued_or_importing": stats["peak_queued_or_importing"],
            "peak_calls_per_20s": stats["peak_calls_per_window"],
            "calls_per_20s_setting": calls_per_20s,
            "peak_concurrent_calls": stats["peak_concurrent_calls"],
            "errors": dict(sorted(errors.items())),
            "tokens_minted": stats["tokens_minted"],
            "foreign_jobs": len(foreign),
            "foreign_levels_max": max(foreign_levels, default=0),
            "quota_pauses": len(paused),
            "files_scanned_for_secrets": scanned,
            "elapsed_s": round(time.monotonic() - started, 1),
        }
    finally:
        lf.stop_all()
        sim.stop()
