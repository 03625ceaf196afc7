"""The per-link concurrency policy (``optimizer.decide``): a table, then properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fedlake.transfers.optimizer import MIN_ACTIVE, MIN_SAMPLES, SUCCESS_GOAL, decide

CEILING = 1000


def _decide(current: int, **kw: Any) -> tuple[int, str]:
    args: dict[str, Any] = {
        "done": 100,
        "failed": 0,
        "throughput": 100.0,
        "previous_throughput": 100.0,
        "running": 0,
        "ceiling": CEILING,
    }
    args.update(kw)
    d = decide(current, **args)
    return d.active, d.reason


def test_the_constants_are_the_documented_policy() -> None:
    assert (MIN_ACTIVE, MIN_SAMPLES, SUCCESS_GOAL) == (2, 5, 0.97)


@pytest.mark.parametrize(
    ("current", "kw", "active", "reason"),
    [
        # low success rate with enough samples: cut by 30% (floor), whatever the throughput
        (20, {"done": 90, "failed": 10}, 14, "success rate 90.0% < 97%: lower"),
        (20, {"done": 0, "failed": 5}, 14, "success rate 0.0% < 97%: lower"),
        (
            20,
            {"done": 4, "failed": 1, "running": 20, "throughput": 1e9},
            14,
            "success rate 80.0% < 97%: lower",
        ),
        (10, {"done": 96, "failed": 4}, 7, "success rate 96.0% < 97%: lower"),
        (3, {"done": 0, "failed": 50}, MIN_ACTIVE, "success rate 0.0% < 97%: lower"),
        (MIN_ACTIVE, {"done": 0, "failed": 50}, MIN_ACTIVE, "success rate 0.0% < 97%: lower"),
        # exactly the goal is not below it
        (20, {"done": 97, "failed": 3}, 20, "steady: keep"),
        # too few samples: a failure or two says nothing yet
        (20, {"done": 1, "failed": 3}, 20, "steady: keep"),
        (20, {"done": 0, "failed": 4}, 20, "steady: keep"),
        (20, {"done": 0, "failed": 0}, 20, "steady: keep"),
        # busy (running >= 80% of the limit) and throughput rising (> +2%): +50%
        (20, {"running": 16, "throughput": 103.0}, 30, "busy and throughput rising: raise"),
        (20, {"running": 20, "throughput": 500.0}, 30, "busy and throughput rising: raise"),
        (3, {"running": 3, "throughput": 200.0}, 5, "busy and throughput rising: raise"),
        (MIN_ACTIVE, {"running": 2, "throughput": 200.0}, 3, "busy and throughput rising: raise"),
        # first round of a busy link: anything beats zero
        (
            16,
            {"running": 16, "throughput": 1.0, "previous_throughput": 0.0},
            24,
            "busy and throughput rising: raise",
        ),
        # a rise of 2% or less is noise
        (20, {"running": 20, "throughput": 102.0}, 20, "steady: keep"),
        # busy and throughput falling (< -10%): -10% (at least one)
        (20, {"running": 20, "throughput": 80.0}, 18, "throughput falling: lower"),
        (5, {"running": 5, "throughput": 10.0}, 4, "throughput falling: lower"),
        (100, {"running": 90, "throughput": 89.0}, 90, "throughput falling: lower"),
        (MIN_ACTIVE, {"running": 2, "throughput": 1.0}, MIN_ACTIVE, "throughput falling: lower"),
        # a fall of 10% or less is noise
        (20, {"running": 20, "throughput": 90.0}, 20, "steady: keep"),
        # idle link (running < 80%): no change whatever the throughput does
        (20, {"running": 15, "throughput": 1e9}, 20, "steady: keep"),
        (20, {"running": 0, "throughput": 0.0}, 20, "steady: keep"),
        (20, {"running": 15, "throughput": 1.0}, 20, "steady: keep"),
        # the ceiling: raising stops there, keeping clamps to it
        (900, {"running": 900, "throughput": 200.0}, 1000, "busy and throughput rising: raise"),
        (
            10,
            {"running": 10, "throughput": 200.0, "ceiling": 12},
            12,
            "busy and throughput rising: raise",
        ),
        (
            12,
            {"running": 12, "throughput": 200.0, "ceiling": 12},
            12,
            "busy and throughput rising: raise",
        ),
        (50, {"ceiling": 10}, 10, "steady: keep"),
    ],
)
def test_policy_table(current: int, kw: dict[str, Any], active: int, reason: str) -> None:
    assert _decide(current, **kw) == (active, reason)


@st.composite
def _rounds(draw: st.DrawFn) -> tuple[int, dict[str, Any]]:
    ceiling = draw(st.integers(min_value=MIN_ACTIVE, max_value=5000))
    current = draw(st.integers(min_value=MIN_ACTIVE, max_value=ceiling))
    throughputs = st.floats(min_value=0, max_value=1e12, allow_nan=False)
    kw = {
        "done": draw(st.integers(min_value=0, max_value=10_000)),
        "failed": draw(st.integers(min_value=0, max_value=10_000)),
        "throughput": draw(throughputs),
        "previous_throughput": draw(throughputs),
        "running": draw(st.integers(min_value=0, max_value=2 * ceiling)),
        "ceiling": ceiling,
    }
    return current, kw


@given(_rounds())
def test_the_result_stays_within_min_active_and_the_ceiling(
    case: tuple[int, dict[str, Any]],
) -> None:
    current, kw = case
    active, _ = _decide(current, **kw)
    assert MIN_ACTIVE <= active <= kw["ceiling"]


@given(_rounds())
def test_a_low_success_rate_always_lowers(case: tuple[int, dict[str, Any]]) -> None:
    current, kw = case
    samples = kw["done"] + kw["failed"]
    assume(samples >= MIN_SAMPLES and kw["done"] / samples < SUCCESS_GOAL)
    active, reason = _decide(current, **kw)
    assert "lower" in reason
    # strictly down, unless already at the floor
    assert active < current or active == current == MIN_ACTIVE


@given(_rounds())
def test_only_a_busy_link_with_rising_throughput_goes_up(
    case: tuple[int, dict[str, Any]],
) -> None:
    current, kw = case
    active, reason = _decide(current, **kw)
    if active > current:
        assert reason == "busy and throughput rising: raise"
        assert kw["running"] >= 0.8 * current
        assert kw["throughput"] > kw["previous_throughput"]


@given(_rounds())
def test_the_reason_matches_the_direction(case: tuple[int, dict[str, Any]]) -> None:
    current, kw = case
    active, reason = _decide(current, **kw)
    if reason.endswith("keep"):
        assert active == current
    elif reason.endswith("lower"):
        assert active <= current
    else:
        assert active >= current


@pytest.mark.parametrize("ceiling", [1, CEILING])
def test_failures_never_raise_a_link(ceiling: int) -> None:
    active, reason = _decide(1, done=0, failed=10, ceiling=ceiling)
    assert "lower" in reason
    assert active <= 1
