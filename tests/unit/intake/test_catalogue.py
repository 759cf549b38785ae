from __future__ import annotations

import asyncio
from dataclasses import dataclass

from orchestrator.intake.catalogue import CatalogueCache


@dataclass(frozen=True)
class F:
    name: str
    display_name: str
    data_type: str = "string"
    length: int | None = 255
    read_only: bool = False


async def test_concurrent_callers_share_one_describe_call() -> None:
    calls = 0

    async def describe() -> list[F]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return [F("email", "Email Address"), F("firstName", "First Name")]

    now = [1000.0]
    cache = CatalogueCache(describe, refresh_s=60, retry_s=5, clock=lambda: now[0])
    results = await asyncio.gather(*[cache.get() for _ in range(8)])
    assert calls == 1 and all(r is results[0] for r in results)
    now[0] += 61
    await asyncio.gather(cache.get(), cache.get())
    assert calls == 2
