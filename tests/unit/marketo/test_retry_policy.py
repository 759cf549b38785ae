"""Pure retry decisions: backoff, throttles that spend nothing, bounded unknowns."""

from __future__ import annotations

from orchestrator.errors import ApiPermanentError, ApiTransientError, QueueFull
from orchestrator.marketo.errors_table import Category, Outcome
from orchestrator.marketo.retry_policy import (
    Action,
    CallState,
    RetryConfig,
    decide,
    throttle_delay,
)
from orchestrator.marketo.tokens import MIN_LIFETIME_S, parse_identity, refresh_deadline

CFG = RetryConfig(attempts=4, base_s=1.0, cap_s=8.0, window_s=20.0)


def out(category: Category, code: str | None = None, retry_after: float | None = None) -> Outcome:
    return Outcome(category, code, "msg", 200, "r#1", None, retry_after, "raw body")


def test_throttle_delay_caps() -> None:
    assert throttle_delay("606", 10, CFG, 0.999) <= 20.0
    assert throttle_delay("606", 10, RetryConfig(4, 1.0, 60.0, 20.0), 0.0) == 10.0
    assert throttle_delay("615", 10, CFG, 0.999) <= 5.0


def test_ok_is_done() -> None:
    assert decide(out(Category.OK), CallState(), CFG, 0.5).action is Action.DONE


def test_queue_full_fails_with_queue_full_and_spends_nothing() -> None:
    d = decide(out(Category.QUEUE_FULL, "1016"), CallState(), CFG, 0.5)
    assert d.action is Action.FAIL
    assert isinstance(d.error, QueueFull)
    assert d.error.code == "1016"
    assert d.state == CallState()


def test_permanent_fails_at_once_with_code_status_and_excerpt() -> None:
    d = decide(out(Category.PERMANENT, "1006"), CallState(), CFG, 0.5)
    assert d.action is Action.FAIL
    assert isinstance(d.error, ApiPermanentError)
    assert (d.error.code, d.error.status, d.error.body_excerpt) == ("1006", 200, "raw body")


def test_transient_retries_until_attempts_are_spent() -> None:
    state = CallState()
    delays = []
    for _ in range(CFG.attempts - 1):
        d = decide(out(Category.TRANSIENT, "604"), state, CFG, 0.0)
        assert d.action is Action.RETRY
        delays.append(d.delay)
        state = d.state
    assert delays == [0.5, 1.0, 2.0]
    d = decide(out(Category.TRANSIENT, "604"), state, CFG, 0.0)
    assert d.action is Action.FAIL
    assert isinstance(d.error, ApiTransientError)
    assert d.error.code == "604"


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    d = decide(out(Category.TRANSIENT, "503", retry_after=3.0), CallState(), CFG, 0.0)
    assert d.delay == 3.0
    d = decide(out(Category.TRANSIENT, "503", retry_after=300.0), CallState(), CFG, 0.0)
    assert d.delay == 8.0


def test_throttle_never_spends_retries_and_606_holds_every_call() -> None:
    state = CallState(spent=CFG.attempts - 1)
    for _ in range(50):
        d = decide(out(Category.THROTTLE, "606"), state, CFG, 0.5)
        assert d.action is Action.RETRY
        assert d.hold_all
        assert 0 < d.delay <= 20.0
        state = d.state
    assert state.spent == CFG.attempts - 1
    assert state.throttles == 50
    d615 = decide(out(Category.THROTTLE, "615"), CallState(), CFG, 0.5)
    assert d615.action is Action.RETRY
    assert not d615.hold_all


def test_quota_pauses_without_spending() -> None:
    d = decide(out(Category.QUOTA, "607"), CallState(spent=3), CFG, 0.5)
    assert d.action is Action.PAUSE_QUOTA
    assert d.state.spent == 3


def test_auth_refreshes_once_free_then_spends() -> None:
    d1 = decide(out(Category.AUTH, "602"), CallState(), CFG, 0.0)
    assert (d1.action, d1.delay, d1.state.spent) == (Action.REFRESH, 0.0, 0)
    d2 = decide(out(Category.AUTH, "602"), d1.state, CFG, 0.0)
    assert d2.action is Action.REFRESH
    assert d2.state.spent == 1
    assert d2.delay > 0
    state = d2.state
    for _ in range(CFG.attempts):
        d = decide(out(Category.AUTH, "601"), state, CFG, 0.0)
        state = d.state
    assert d.action is Action.FAIL
    assert isinstance(d.error, ApiTransientError)


def test_unknown_code_is_retried_a_few_times_then_permanent() -> None:
    state = CallState()
    actions = []
    for _ in range(3):
        d = decide(out(Category.UNKNOWN, "9999"), state, CFG, 0.0)
        actions.append(d.action)
        state = d.state
    assert actions == [Action.RETRY, Action.RETRY, Action.FAIL]
    assert isinstance(d.error, ApiPermanentError)
    assert d.error.code == "9999"
    assert d.error.body_excerpt == "raw body"


# ----- identity answers and refresh deadlines (pure) ----------------------------------------


def test_parse_identity_cases() -> None:
    good = parse_identity(200, b'{"access_token":"t:sim","expires_in":3599}')
    assert (good.kind, good.token, good.expires_in) == ("token", "t:sim", 3599.0)
    assert parse_identity(401, b'{"error":"invalid_client"}').kind == "auth"
    assert "invalid_client" in parse_identity(401, b'{"error":"invalid_client"}').message
    assert parse_identity(400, b"{}").kind == "auth"
    assert parse_identity(429, b"{}").kind == "transient"
    assert parse_identity(503, b"<html>").kind == "transient"
    assert parse_identity(200, b"<html>login</html>").kind == "transient"
    assert parse_identity(200, b'{"token_type":"bearer"}').kind == "transient"
    assert parse_identity(200, b'{"access_token":""}').kind == "transient"
    zero = parse_identity(200, b'{"access_token":"t","expires_in":0}')
    assert (zero.kind, zero.expires_in) == ("token", 0.0)
    assert parse_identity(200, b'{"access_token":"t","expires_in":"x"}').expires_in == 0.0
    assert parse_identity(200, b'{"access_token":"t"}').expires_in == 0.0


def test_refresh_deadline() -> None:
    assert refresh_deadline(100.0, 3600.0, 60.0, same_token=False) == 3640.0
    # The same token came back: ask again only just before it ends.
    assert refresh_deadline(100.0, 60.0, 60.0, same_token=True) == 100.0 + 60.0 - MIN_LIFETIME_S
    # A short-lived new token is used for at least half its life.
    assert refresh_deadline(0.0, 30.0, 60.0, same_token=False) == 15.0
