"""Identity edge cases: 401, expires_in 0, no access_token, HTML, shared refresh, no leaks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aioresponses import aioresponses
from mkto_helpers import IDENTITY, FakeTime, token_ok
from structlog.testing import capture_logs

from orchestrator.errors import ApiTransientError, AuthError
from orchestrator.logging import redact_text
from orchestrator.marketo.tokens import MIN_LIFETIME_S, WAIT_PAD_S, TokenManager
from orchestrator.settings import Settings


@pytest.fixture
async def manager(
    settings: Settings, fake_time: FakeTime, mocked: aioresponses
) -> AsyncIterator[TokenManager]:
    async with aiohttp.ClientSession() as session:
        yield TokenManager(
            settings.marketo, "top-secret-value", session,
            clock=fake_time.clock, sleep=fake_time.sleep, rand=lambda: 0.0,
        )


async def test_first_get_asks_identity_with_a_form_body(
    manager: TokenManager, mocked: aioresponses
) -> None:
    token_ok(mocked, "tok-A:sim")
    with capture_logs() as logs:
        assert await manager.get() == "tok-A:sim"
        assert await manager.get() == "tok-A:sim"
    assert manager.identity_calls == 1
    (call,) = [c for (m, u), cs in mocked.requests.items() for c in cs if m == "POST"]
    assert call.kwargs["data"] == {
        "grant_type": "client_credentials", "client_id": "cid", "client_secret": "top-secret-value",
    }
    (key,) = mocked.requests
    assert "client_secret" not in str(key[1])  # never in the URL
    refreshed = [e for e in logs if e["event"] == "token_refreshed"]
    assert refreshed == [
        {"event": "token_refreshed", "expires_in": 3600.0, "same_token": False,
         "log_level": "info"}
    ]
    assert "tok-A:sim" not in repr(logs)
    # The token and the secret are registered with the redaction.
    assert redact_text("x tok-A:sim top-secret-value") == "x *** ***"


async def test_identity_401_is_an_auth_error_logged_once(
    manager: TokenManager, mocked: aioresponses
) -> None:
    for _ in range(2):
        mocked.post(IDENTITY, status=401,
                    payload={"error": "invalid_client", "error_description": "Bad client credentials"})
    with capture_logs() as logs:
        with pytest.raises(AuthError) as info:
            await manager.get()
        with pytest.raises(AuthError):
            await manager.get()
    assert info.value.code == "401"
    assert "Bad client credentials" in info.value.message
    assert [e["event"] for e in logs].count("auth_failed") == 1
    assert manager.identity_calls == 2


async def test_expires_in_zero_is_waited_out_then_asked_again(
    manager: TokenManager, mocked: aioresponses, fake_time: FakeTime
) -> None:
    token_ok(mocked, "old:sim", expires_in=0)
    token_ok(mocked, "new:sim", expires_in=3600)
    t0 = fake_time.now
    assert await manager.get() == "new:sim"
    assert manager.identity_calls == 2
    assert fake_time.sleeps == [0 + WAIT_PAD_S]
    assert fake_time.now == t0 + WAIT_PAD_S


async def test_tiny_expires_in_sleeps_its_remaining_life(
    manager: TokenManager, mocked: aioresponses, fake_time: FakeTime
) -> None:
    token_ok(mocked, "old:sim", expires_in=3)
    token_ok(mocked, "new:sim", expires_in=3600)
    assert await manager.get() == "new:sim"
    assert fake_time.sleeps == [3 + WAIT_PAD_S]


async def test_a_token_that_stays_too_short_gives_up(
    manager: TokenManager, mocked: aioresponses
) -> None:
    for _ in range(10):
        token_ok(mocked, "old:sim", expires_in=0)
    with pytest.raises(ApiTransientError):
        await manager.get()


async def test_body_without_access_token_or_html_is_retried(
    manager: TokenManager, mocked: aioresponses, fake_time: FakeTime
) -> None:
    mocked.post(IDENTITY, payload={"token_type": "bearer", "expires_in": 3600})
    mocked.post(IDENTITY, body="<html><body>Service Unavailable</body></html>",
                content_type="text/html")
    mocked.post(IDENTITY, status=502, body="<html>Bad Gateway</html>", content_type="text/html")
    token_ok(mocked, "good:sim")
    with capture_logs() as logs:
        assert await manager.get() == "good:sim"
    assert manager.identity_calls == 4
    assert len(fake_time.sleeps) == 3
    assert [e["event"] for e in logs].count("identity_error") == 3


async def test_identity_keeps_failing_gives_a_transient_error(
    manager: TokenManager, mocked: aioresponses, settings: Settings
) -> None:
    for _ in range(settings.marketo.retry_attempts):
        mocked.post(IDENTITY, status=503, body="<html>down</html>", content_type="text/html")
    with pytest.raises(ApiTransientError):
        await manager.get()
    assert manager.identity_calls == settings.marketo.retry_attempts


async def test_connection_error_on_identity_is_retried(
    manager: TokenManager, mocked: aioresponses
) -> None:
    mocked.post(IDENTITY, exception=aiohttp.ClientConnectionError("refused"))
    token_ok(mocked, "good:sim")
    assert await manager.get() == "good:sim"


async def test_concurrent_callers_share_one_refresh(
    manager: TokenManager, mocked: aioresponses
) -> None:
    token_ok(mocked, "shared:sim")
    tokens = await asyncio.gather(*(manager.get() for _ in range(20)))
    assert set(tokens) == {"shared:sim"}
    assert manager.identity_calls == 1


async def test_refresh_after_602_from_many_callers_makes_one_call(
    manager: TokenManager, mocked: aioresponses
) -> None:
    token_ok(mocked, "one:sim")
    token_ok(mocked, "two:sim")
    stale = await manager.get()
    fresh = await asyncio.gather(*(manager.refresh(stale) for _ in range(10)))
    assert set(fresh) == {"two:sim"}
    assert manager.identity_calls == 2


async def test_proactive_refresh_before_expiry(
    manager: TokenManager, mocked: aioresponses, fake_time: FakeTime
) -> None:
    token_ok(mocked, "one:sim", expires_in=600)
    token_ok(mocked, "one:sim", expires_in=59)  # asked early: Marketo returns the same token
    token_ok(mocked, "one:sim", expires_in=4)  # asked again near the end: wait it out
    token_ok(mocked, "two:sim", expires_in=3600)
    assert await manager.get() == "one:sim"
    fake_time.now += 600 - 60 + 1  # inside the refresh margin
    assert await manager.get() == "one:sim"
    assert manager.identity_calls == 2
    fake_time.now += 59 - MIN_LIFETIME_S + 0.1
    assert await manager.get() == "two:sim"
    assert manager.identity_calls == 4
    assert fake_time.sleeps == [4 + WAIT_PAD_S]
