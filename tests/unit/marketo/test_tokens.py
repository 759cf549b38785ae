"""Identity edge cases: 401, expires_in 0, short lifetimes, no access_token, HTML, shared
refresh, the secret read again on every try, no leaks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aioresponses import aioresponses
from mkto_helpers import IDENTITY, FakeTime, token_ok
from structlog.testing import capture_logs

from orchestrator.errors import ApiTransientError, AuthError, ConfigError
from orchestrator.logging import redact_text
from orchestrator.marketo.tokens import WAIT_PAD_S, ZERO_WAITS, TokenManager
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
         "use_s": 3540.0, "log_level": "info"}
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


async def test_a_short_lived_token_is_used_while_it_lives(
    manager: TokenManager, mocked: aioresponses, fake_time: FakeTime
) -> None:
    """Issue 12.2: a margin (60 s) longer than the token's life no longer means "expiring"."""
    token_ok(mocked, "short:sim", expires_in=3)
    token_ok(mocked, "next:sim", expires_in=3)
    assert await manager.get() == "short:sim"
    assert fake_time.sleeps == []
    fake_time.now += 3 * 0.75 - 0.01  # the margin is capped at a quarter of its life
    assert await manager.get() == "short:sim"
    assert manager.identity_calls == 1
    fake_time.now += 0.02
    assert await manager.get() == "next:sim"
    assert manager.identity_calls == 2


async def test_tokens_that_stay_at_zero_are_used_in_the_end_never_given_up(
    manager: TokenManager, mocked: aioresponses, fake_time: FakeTime
) -> None:
    for _ in range(10):
        token_ok(mocked, "old:sim", expires_in=0)
    with capture_logs() as logs:
        assert await manager.get() == "old:sim"
    assert manager.identity_calls == ZERO_WAITS + 1
    assert fake_time.sleeps == [WAIT_PAD_S] * ZERO_WAITS
    assert [e["event"] for e in logs].count("token_expiring") == ZERO_WAITS
    fake_time.now += WAIT_PAD_S
    assert await manager.get() == "old:sim"  # asked again, used again: never an error
    assert manager.identity_calls == ZERO_WAITS + 2


async def test_identity_handing_back_the_refused_token_is_waited_out(
    manager: TokenManager, mocked: aioresponses, fake_time: FakeTime
) -> None:
    token_ok(mocked, "dead:sim", expires_in=3600)
    token_ok(mocked, "dead:sim", expires_in=3000)  # identity has not noticed it died yet
    token_ok(mocked, "alive:sim", expires_in=3600)
    stale = await manager.get()
    assert await manager.refresh(stale) == "alive:sim"
    assert manager.identity_calls == 3
    assert fake_time.sleeps == [WAIT_PAD_S]


async def test_the_secret_is_read_again_on_every_identity_call(
    settings: Settings, fake_time: FakeTime, mocked: aioresponses
) -> None:
    """Issue 13.1: a rotated secret file is used at the next identity try."""
    secrets = iter(["first-secret-1", "second-secret-2"])
    mocked.post(IDENTITY, status=401, payload={"error": "invalid_client"})
    token_ok(mocked, "good:sim")
    async with aiohttp.ClientSession() as session:
        manager = TokenManager(settings.marketo, lambda: next(secrets), session,
                               clock=fake_time.clock, sleep=fake_time.sleep)
        with pytest.raises(AuthError):
            await manager.get()
        assert await manager.get() == "good:sim"
    sent = [c.kwargs["data"]["client_secret"]
            for (m, _), cs in mocked.requests.items() for c in cs if m == "POST"]
    assert sent == ["first-secret-1", "second-secret-2"]
    assert redact_text("second-secret-2") == "***"


async def test_an_unreadable_secret_is_a_refusal_not_a_crash(
    settings: Settings, fake_time: FakeTime, mocked: aioresponses
) -> None:
    def unreadable() -> str:
        raise ConfigError("marketo.client_secret_file", "cannot read /run/x: No such file")

    async with aiohttp.ClientSession() as session:
        manager = TokenManager(settings.marketo, unreadable, session,
                               clock=fake_time.clock, sleep=fake_time.sleep)
        with pytest.raises(AuthError) as info:
            await manager.get()
    assert info.value.code == "secret"
    assert "cannot read the client secret" in info.value.message
    assert manager.identity_calls == 0
    assert not mocked.requests


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
    token_ok(mocked, "one:sim", expires_in=0)  # asked at its end: not replaced yet, wait
    token_ok(mocked, "two:sim", expires_in=3600)
    assert await manager.get() == "one:sim"
    fake_time.now += 600 - 60 + 1  # inside the refresh margin
    assert await manager.get() == "one:sim"
    assert manager.identity_calls == 2
    fake_time.now += 58.9  # the same token is used until it expires
    assert await manager.get() == "one:sim"
    assert manager.identity_calls == 2
    fake_time.now += 0.2
    assert await manager.get() == "two:sim"
    assert manager.identity_calls == 4
    assert fake_time.sleeps == [WAIT_PAD_S]
