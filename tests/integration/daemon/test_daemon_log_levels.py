"""Issue 13.7: what an operator must see is logged at ``warning`` or ``error``, so an alert on
the level works. The real daemon (intake, scheduler, poller, reporter) against the simulator
over HTTP; ``capture_logs`` records each event with its level."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from daemon_sim import MakeSim
from structlog.testing import capture_logs

from orchestrator.daemon import Daemon
from orchestrator.settings import Settings

GOOD = "email,firstName\r\n" + "".join(f"g{i}@example.com,G{i}\r\n" for i in range(6))


def levels(logs: list[dict[str, Any]], event: str, **match: Any) -> list[str]:
    return [e["log_level"] for e in logs if e["event"] == event
            and all(e.get(k) == v for k, v in match.items())]


async def test_final_failures_are_errors_and_partial_outcomes_warnings(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(rate_limit_calls=100_000, rows_per_second=50.0)
    # Run 1: the only batch ends Failed and may not go again: the upload is given up.
    await sim.patch({"faults": {"fail_next_jobs": 1}})
    settings = daemon_settings(sim.url, daemon={"max_batch_attempts": 1})
    (settings.paths.inbox / "given-up.csv").write_text(GOOD.replace("g", "x"))
    with capture_logs() as run1:
        async with Daemon(settings, handle_signals=False) as daemon:
            await asyncio.wait_for(daemon.run(once=True), 30)
    assert levels(run1, "import_finished", status="failed") == ["error"]
    assert levels(run1, "file_finished", status="rejected") == ["error"]
    assert levels(run1, "daemon_stopped") == ["info"]

    # Run 2: a clean file, one Marketo partly refuses, a bad file, an empty one.
    inbox = settings.paths.inbox
    (inbox / "clean.csv").write_text(GOOD)
    (inbox / "no-email.csv").write_text("firstName,lastName\r\nAda,Lovelace\r\n")
    (inbox / "empty.csv").write_text("email,firstName\r\n")
    (inbox / "half.csv").write_text(
        "email,firstName,numberOfEmployees\r\nh1@example.com,H,12\r\nh2@example.com,H,many\r\n"
    )
    with capture_logs() as run2:
        async with Daemon(settings, handle_signals=False) as daemon:
            await asyncio.wait_for(daemon.run(once=True), 30)
    finished = {e["file"]: (e["status"], e["log_level"]) for e in run2
                if e["event"] == "file_finished"}
    assert finished == {
        "clean.csv": ("complete", "info"),
        "half.csv": ("partial", "warning"),
        "no-email.csv": ("rejected", "error"),
        "empty.csv": ("empty", "warning"),
    }
    assert set(levels(run2, "import_finished")) == {"info"}  # every batch completed
    # Intake's own line about the bad file is a warning: the canonical error is file_finished.
    assert levels(run2, "file_rejected", file="no-email.csv") == ["warning"]
