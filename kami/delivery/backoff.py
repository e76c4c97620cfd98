"""Retry timing for deliveries (invariant 7): the schedule is data (settings), the jitter is here.

Attempt n (1-based, counting the one that just failed) waits a random time between 50 % and
100 % of `schedule[n-1]` ("equal jitter"): retries spread out after an outage instead of all
hitting the mail server again in the same second, and never come sooner than half the plan.
After `len(schedule) + 1` attempts the delivery goes to `manual`.
"""
from __future__ import annotations

import random

from django.conf import settings

_rng = random.SystemRandom()


def schedule(channel: str = "") -> list[int]:
    """The configured schedule, in seconds: the channel's own (settings.KAMI_DELIVERY_BACKOFF_BY_CHANNEL,
    e.g. the merchant's webhooks, retried over days) or else settings.KAMI_DELIVERY_BACKOFF."""
    own = settings.KAMI_DELIVERY_BACKOFF_BY_CHANNEL.get(channel) if channel else None
    return [int(s) for s in (own if own is not None else settings.KAMI_DELIVERY_BACKOFF)]


def max_attempts(plan: list[int]) -> int:
    """The first try plus one retry per schedule entry."""
    return len(plan) + 1


def delay(attempt: int, plan: list[int], *, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based). Past the end of the
    schedule the last entry repeats; an empty schedule means no wait."""
    if not plan:
        return 0.0
    base = max(0, plan[min(max(attempt, 1), len(plan)) - 1])
    return (rng or _rng).uniform(base / 2, base)
