"""`/readyz`: can this process take work and do it?

Ready means the queue answers, the App's credentials are loaded, and at least
one model tier's server answers. The tier check reaches out over the network,
so its answer is kept for a few seconds: probes every second or two must not
turn into a stream of requests to the model server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.config import Settings, Tier

# How long a tier check's answer stands.
TIERS_TTL_S = 10.0
# Each tier's server gets this long to answer; probes usually wait a few seconds.
TIER_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def queue_check(queue: Any) -> Check:
    """The ledger answers, and the queue's storage (SQLite or Redis) too."""
    try:
        waiting = queue.ledger.count("queued")
        huey = getattr(queue, "huey", None)
        if huey is not None:
            huey.pending_count()
    except Exception as exc:
        return Check(False, f"unreachable: {type(exc).__name__}: {exc}"[:200])
    return Check(True, f"{waiting} queued")


def credentials_check(settings: Settings) -> Check:
    # serve imports the web app, which imports this module: take serve's rule at call time.
    from bot.serve import missing_settings

    missing = missing_settings(settings)
    return Check(not missing, "missing " + ", ".join(missing) if missing else "loaded")


async def tiers_check(tiers: list[Tier], timeout_s: float = TIER_TIMEOUT_S) -> Check:
    """One tier answering is enough: the engine escalates past the others."""
    # The model runtime loads here, at the first probe, not when the web app starts.
    from bot.models import reachable

    usable = [tier for tier in tiers if tier.available()]
    if not usable:
        return Check(False, "no tier is usable (each lacks its API key)")
    reasons = await asyncio.gather(*(reachable(tier, timeout_s) for tier in usable))
    answering = [tier.name for tier, reason in zip(usable, reasons, strict=True) if reason is None]
    if answering:
        return Check(True, "answering: " + ", ".join(answering))
    return Check(False, "; ".join(f"{t.name}: {r}" for t, r in zip(usable, reasons, strict=True)))


@dataclass
class Readiness:
    settings: Settings
    queue: Any
    ttl_s: float = TIERS_TTL_S
    clock: Callable[[], float] = time.monotonic
    _tiers: tuple[float, Check] | None = field(default=None, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def _tiers_cached(self) -> Check:
        async with self._lock:  # concurrent probes share one check
            if self._tiers is None or self.clock() - self._tiers[0] >= self.ttl_s:
                self._tiers = (self.clock(), await tiers_check(self.settings.tiers))
            return self._tiers[1]

    async def check(self) -> tuple[bool, dict[str, Check]]:
        checks = {
            "queue": await asyncio.to_thread(queue_check, self.queue),
            "credentials": credentials_check(self.settings),
            "models": await self._tiers_cached(),
        }
        return all(c.ok for c in checks.values()), checks
