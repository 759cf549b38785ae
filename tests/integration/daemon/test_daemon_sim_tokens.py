"""Short-lived tokens (issue 12.2): 5-s and 2-s tokens, and tokens that die before
``expires_in`` says, with 5 % HTTP 502 on identity. Every file completes, and identity calls
stay proportionate to the time that passed (no refresh storm).

The simulator runs on a `ScaledClock`; the daemon and its client read the same clock and the
client's waits are scaled the same way, so both sides agree on how long a token lives while
a minute of simulated time passes in a few real seconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from daemon_sim import SplitIntake, write_lead_files

from orchestrator.daemon import Daemon
from orchestrator.marketo import MarketoClient
from orchestrator.models import FileStatus
from orchestrator.results import Reporter
from orchestrator.settings import Settings
from orchestrator.simulator import ScaledClock, SimulatorConfig, create_app

#: Simulated seconds per real second.
SCALE = 20.0
#: Identity calls allowed per token lifetime: the new token, one when the margin is reached
#: (Marketo hands back the same token), one or two when it has run out (``expires_in`` 0).
PER_LIFETIME = 4
#: Identity calls allowed on top (502s retried).
SLACK = 4


@pytest.fixture
async def scaled_sim() -> AsyncIterator[Callable[..., Any]]:
    servers: list[TestServer] = []

    async def factory(**config: Any) -> tuple[str, ScaledClock]:
        clock = ScaledClock(time_scale=SCALE)
        server = TestServer(create_app(SimulatorConfig(**config), clock=clock), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/"), clock

    yield factory
    for server in servers:
        await server.close()


async def _admin(url: str, path: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url + path) as resp:
        return await resp.json()


@pytest.mark.parametrize(
    ("lifetime_s", "early_s"),
    [(5.0, 0.0), (2.0, 0.0), (5.0, 3.0)],
    ids=["5s-tokens", "2s-tokens", "5s-tokens-dying-after-2s"],
)
async def test_short_lived_tokens_slow_nothing_and_cause_no_refresh_storm(
    scaled_sim: Callable[..., Any],
    daemon_settings: Callable[..., Settings],
    lifetime_s: float,
    early_s: float,
) -> None:
    url, clock = await scaled_sim(
        rate_limit_calls=100_000, max_body_bytes=4096, rows_per_second=2.0,
        token_lifetime_s=lifetime_s,
        faults={"identity_502_probability": 0.05, "token_early_expiry_s": early_s},
    )
    settings = daemon_settings(
        url,
        # The default margin (60 s) is longer than every token's whole life here.
        marketo={"token_refresh_margin_s": 60.0, "retry_base_s": 0.2, "retry_max_s": 2.0},
        polling={"min_interval_s": 0.25, "max_interval_s": 1.0},
    )
    made = write_lead_files(settings.paths.inbox, 4, lambda n: 20 + 10 * n)

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0) / SCALE)

    started = clock.now()
    async with MarketoClient(settings, clock=clock.now, sleep=sleep) as client:
        daemon = Daemon(
            settings, clock=clock.now, client=client,
            intake_factory=lambda store, c: SplitIntake(settings, store),
            reporter_factory=lambda store, c: Reporter(settings, store, c, clock.now),
            handle_signals=False,
        )
        async with daemon:
            await asyncio.wait_for(daemon.run(once=True), 30)
            complete = await daemon.store.files_in(FileStatus.COMPLETE)
    elapsed = clock.now() - started
    assert sorted(f.name for f in complete) == sorted(made)
    reports = [json.loads(p.read_text()) for p in settings.paths.results.glob("*/report.json")]
    assert sorted(r["status"] for r in reports) == ["complete"] * len(made)

    requests = await _admin(url, "/_sim/requests")
    identity = [r for r in requests if r["endpoint"] == "identity"]
    api = [r for r in requests if r["endpoint"] != "identity"]
    stats = next(iter((await _admin(url, "/_sim/stats"))["instances"].values()))
    lives = elapsed / (lifetime_s - early_s)
    figures = {
        "elapsed_sim_s": round(elapsed, 1), "token_lives": round(lives, 1),
        "identity_calls": len(identity), "api_calls": len(api),
        "identity_per_min": round(len(identity) / elapsed * 60, 1),
        "tokens_minted": stats["tokens_minted"], "errors": stats["errors"],
    }
    print(json.dumps(figures))
    assert elapsed > 5 * (lifetime_s - early_s), figures  # many tokens lived and died
    # Identity is asked a few times per token lifetime, never once per call or more.
    assert len(identity) <= PER_LIFETIME * (lives + 1) + SLACK, figures
    assert len(identity) <= len(api) / 2 + SLACK, figures
    if early_s:
        # Tokens did die early; the calls in flight with a dead token (up to 5) each got a
        # 602, and one identity call replaced it for all of them (single flight).
        refused = stats["errors"].get("602", 0)
        assert refused >= 1, figures
        assert refused <= settings.limits.max_concurrent_calls * (lives + 1), figures
        assert len(identity) <= lives + 1 + SLACK, figures
