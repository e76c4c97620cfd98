from __future__ import annotations

import random

import pytest

from kami.delivery.backoff import delay, max_attempts

pytestmark = pytest.mark.sqlite_only  # no database


def test_delay_is_between_half_and_all_of_the_scheduled_step():
    rng = random.Random(7)
    plan = [30, 60, 300]
    for attempt, step in [(1, 30), (2, 60), (3, 300)]:
        samples = [delay(attempt, plan, rng=rng) for _ in range(500)]
        assert all(step / 2 <= s <= step for s in samples)
        assert max(samples) - min(samples) > step / 4  # really spread out


def test_past_the_end_the_last_step_repeats_and_an_empty_plan_waits_nothing():
    assert 150 <= delay(9, [30, 300]) <= 300
    assert delay(1, []) == 0


def test_attempts_are_the_first_try_plus_one_per_step(settings):
    assert max_attempts([30, 60]) == 3
    assert max_attempts([]) == 1
    assert sum(settings.KAMI_DELIVERY_BACKOFF) / 2 >= 12 * 3600  # even unlucky jitter keeps trying for half a day
