"""The scheduler's slot accounting (``_Capacity``): every limit, alone and together."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedlake.transfers.endpoints import Limits
from fedlake.transfers.scheduler import _Capacity


def _limits(
    links: dict[tuple[str, str], int] | None = None,
    inbound: dict[str, int] | None = None,
    outbound: dict[str, int] | None = None,
    global_max: int | None = None,
) -> Limits:
    return Limits(links or {}, inbound or {}, outbound or {}, global_max)


def test_no_limits_fit_anything() -> None:
    cap = _Capacity.of(_limits(), {("A", "B"): 10_000})
    assert cap.fits("A", "B")
    assert not cap.full()
    for _ in range(1000):
        cap.take("A", "B")
    assert cap.fits("A", "B") and not cap.full()


def test_of_counts_running_transfers_per_link_rse_and_in_total() -> None:
    active = {("A", "B"): 3, ("A", "C"): 2, ("D", "B"): 4, ("", "B"): 1}
    cap = _Capacity.of(_limits(), active)
    assert cap.links[("A", "B")] == 3
    assert cap.links[("X", "Y")] == 0
    assert cap.inbound == {"B": 8, "C": 2}
    assert cap.outbound == {"A": 5, "D": 4, "": 1}
    assert cap.total == 10


def test_take_counts_everywhere() -> None:
    cap = _Capacity.of(_limits(), {})
    cap.take("A", "B")
    cap.take("A", "B")
    cap.take("C", "B")
    assert cap.links == {("A", "B"): 2, ("C", "B"): 1}
    assert cap.inbound == {"B": 3}
    assert cap.outbound == {"A": 2, "C": 1}
    assert cap.total == 3


def test_global_limit() -> None:
    cap = _Capacity.of(_limits(global_max=3), {("A", "B"): 1})
    assert not cap.full()
    cap.take("C", "D")
    assert cap.fits("E", "F") and not cap.full()
    cap.take("E", "F")
    assert cap.full()
    assert not cap.fits("G", "H")  # any link
    # already over the limit (it was lowered while transfers ran)
    assert _Capacity.of(_limits(global_max=2), {("A", "B"): 5}).full()


def test_global_limit_of_zero_is_full() -> None:
    cap = _Capacity.of(_limits(global_max=0), {})
    assert cap.full()
    assert not cap.fits("A", "B")


def test_link_limit_is_per_direction() -> None:
    cap = _Capacity.of(_limits(links={("A", "B"): 2}), {("A", "B"): 1})
    assert cap.fits("A", "B")
    cap.take("A", "B")
    assert not cap.fits("A", "B")
    assert cap.fits("B", "A")  # the reverse link has no limit
    assert cap.fits("A", "C")  # nor has another link of the same source
    assert not cap.full()  # a full link is not a full worker


def test_inbound_limit_counts_every_source() -> None:
    cap = _Capacity.of(_limits(inbound={"B": 3}), {("A", "B"): 1, ("C", "B"): 1})
    assert cap.fits("D", "B")
    cap.take("D", "B")
    assert not cap.fits("A", "B")
    assert not cap.fits("E", "B")  # a new source too
    assert cap.fits("B", "A")  # B as a source is not limited by its inbound limit
    assert cap.fits("A", "C")


def test_outbound_limit_counts_every_destination() -> None:
    cap = _Capacity.of(_limits(outbound={"A": 2}), {("A", "B"): 1})
    assert cap.fits("A", "C")
    cap.take("A", "C")
    assert not cap.fits("A", "B")
    assert not cap.fits("A", "Z")
    assert cap.fits("Z", "A")  # A as a destination is not limited by its outbound limit


def test_the_tightest_limit_wins() -> None:
    limits = _limits(links={("A", "B"): 10}, inbound={"B": 2}, outbound={"A": 5}, global_max=100)
    cap = _Capacity.of(limits, {})
    cap.take("A", "B")
    cap.take("A", "B")
    assert not cap.fits("A", "B")  # inbound B (2) before the link (10)
    assert cap.fits("A", "C")
    for _ in range(3):
        cap.take("A", "C")
    assert not cap.fits("A", "C")  # outbound A (5)
    assert cap.fits("C", "D")


def test_limit_already_exceeded_by_running_transfers() -> None:
    """Limits lowered below what runs: nothing more fits, nothing breaks."""
    limits = _limits(links={("A", "B"): 1}, inbound={"C": 1}, outbound={"D": 1})
    cap = _Capacity.of(limits, {("A", "B"): 5, ("X", "C"): 4, ("D", "Y"): 3})
    assert not cap.fits("A", "B")
    assert not cap.fits("Q", "C")
    assert not cap.fits("D", "Q")
    assert cap.fits("Q", "R")


@given(
    st.lists(
        st.tuples(st.sampled_from("ABCD"), st.sampled_from("ABCD")).filter(lambda p: p[0] != p[1]),
        max_size=200,
    ),
    st.dictionaries(
        st.tuples(st.sampled_from("ABCD"), st.sampled_from("ABCD")),
        st.integers(min_value=1, max_value=6),
    ),
    st.dictionaries(st.sampled_from("ABCD"), st.integers(min_value=1, max_value=8)),
    st.dictionaries(st.sampled_from("ABCD"), st.integers(min_value=1, max_value=8)),
    st.one_of(st.none(), st.integers(min_value=1, max_value=20)),
)
def test_taking_only_what_fits_never_exceeds_a_limit(
    wanted: list[tuple[str, str]],
    links: dict[tuple[str, str], int],
    inbound: dict[str, int],
    outbound: dict[str, int],
    global_max: int | None,
) -> None:
    """The scheduler's loop (take only when it fits) keeps every counter within its limit."""
    cap = _Capacity.of(_limits(links, inbound, outbound, global_max), {})
    for s, d in wanted:
        if cap.full():
            break
        if cap.fits(s, d):
            cap.take(s, d)
    for key, n in links.items():
        assert cap.links[key] <= n
    for rse, n in inbound.items():
        assert cap.inbound[rse] <= n
    for rse, n in outbound.items():
        assert cap.outbound[rse] <= n
    if global_max is not None:
        assert cap.total <= global_max
    assert cap.total == sum(cap.links.values())


@pytest.mark.parametrize("n", [1, 7])
def test_full_is_exactly_the_global_limit(n: int) -> None:
    cap = _Capacity.of(_limits(global_max=n), {})
    for _ in range(n):
        assert not cap.full()
        cap.take("A", "B")
    assert cap.full()
