"""The state of one Marketo instance: tokens, limits, queue, batches, leads, statistics.

docs/reference/marketo-api.md §8.1: each instance has its own tokens, queue, rate windows and daily
quota.
"""

from __future__ import annotations

from collections import Counter, deque
from datetime import datetime, timedelta
from typing import Any

from orchestrator.simulator.clock import CHICAGO
from orchestrator.simulator.config import SimulatorConfig
from orchestrator.simulator.jobs import Job
from orchestrator.simulator.leadstore import LeadStore

#: Requests kept in each instance's request log (oldest dropped first).
REQUEST_LOG_SIZE = 10_000
#: Tokens the request log looks for in each request (the newest ones).
RECENT_TOKENS = 4
#: First batchId handed out by an instance.
FIRST_BATCH_ID = 1001


def next_chicago_midnight(ts: float) -> float:
    """Epoch seconds of the first America/Chicago midnight after ``ts`` (quota reset, 607)."""
    local = datetime.fromtimestamp(ts, CHICAGO)
    tomorrow = (local + timedelta(days=1)).date()
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=CHICAGO).timestamp()


class Instance:
    """The state of one Marketo instance (docs/reference/marketo-api.md §8.1)."""

    def __init__(self, munchkin_id: str, config: SimulatorConfig) -> None:
        self.munchkin_id = munchkin_id
        self.reset(config)

    def reset(self, config: SimulatorConfig) -> None:
        """Forget everything: tokens, limits, queue, batches, leads and statistics."""
        self.token: str | None = None
        self.token_expires_at = 0.0
        self.token_dies_at = 0.0
        self.tokens_minted = 0
        self.expired_tokens: set[str] = set()
        #: The last few tokens minted, newest last (scanned for the request log).
        self.recent_tokens: deque[str] = deque(maxlen=RECENT_TOKENS)
        self.rate_calls: deque[float] = deque()
        self.inflight = 0
        self.quota_used = 0
        self.quota_resets_at = 0.0
        self.queue: deque[Job] = deque()
        self.importing: list[Job] = []
        self.jobs: dict[int, Job] = {}
        self.next_batch_id = FIRST_BATCH_ID
        self.store = LeadStore()
        self.peak_queued = 0
        self.slot_busy = [0.0] * config.max_importing
        self.peak_rate = 0
        self.peak_concurrent = 0
        self.errors: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.expired_batches = 0
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.fail_next = config.faults.fail_next_jobs
        self.drop_next = config.faults.drop_next_upload_responses

    @property
    def load(self) -> int:
        """Jobs queued or importing (the figure limited to ``max_queued``)."""
        return len(self.queue) + len(self.importing)
