"""A source's numbering, checked against a naive reference: the set of numbers seen."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trailseal.gaps import SourceState, merge


def _reference(seen: set[int]) -> tuple[int, int, int, list[tuple[int, int]]]:
    """high_water, max_seen, missing and gaps, straight from the definition."""
    high_water = -1
    while high_water + 1 in seen:
        high_water += 1
    max_seen = max(seen, default=-1)
    absent = [n for n in range(max_seen + 1) if n not in seen]
    gaps: list[tuple[int, int]] = []
    for n in absent:
        if gaps and gaps[-1][1] == n - 1:
            gaps[-1] = (gaps[-1][0], n)
        else:
            gaps.append((n, n))
    return high_water, max_seen, len(absent), gaps


def _view(state: SourceState) -> tuple[int, int, int, list[tuple[int, int]]]:
    return state.high_water, state.max_seen, state.missing, state.gaps()


def test_contiguous_numbers_leave_no_gap():
    state = merge(SourceState(), range(10))
    assert _view(state) == (9, 9, 0, [])
    assert state.ahead == ()


def test_gaps_are_inclusive_ranges():
    state = merge(SourceState(), [0, 1, 2, 5, 6, 9])
    assert _view(state) == (2, 9, 4, [(3, 4), (7, 8)])
    assert state.ahead == (5, 6, 9, 9)


def test_a_late_arrival_closes_its_gap_and_moves_the_high_water():
    state = merge(merge(SourceState(), [0, 1, 2, 5, 6, 9]), [4, 3])
    assert _view(state) == (6, 9, 2, [(7, 8)])


def test_missing_zero():
    assert _view(merge(SourceState(), [1, 2])) == (-1, 2, 1, [(0, 0)])


def test_repeats_change_nothing_but_their_count():
    state = merge(SourceState(), [0, 1, 5])
    again = merge(state, [1, 5, 5, 0])
    assert _view(again) == _view(state)
    assert again.repeated == 4
    assert merge(SourceState(), [3, 3]).repeated == 1


def test_gaps_can_be_listed_in_part():
    state = merge(SourceState(), range(0, 40, 2))
    assert state.gaps(3) == [(1, 1), (3, 3), (5, 5)]
    assert state.missing == 19


def test_past_the_cap_the_lowest_gaps_are_written_off():
    state = merge(SourceState(), [0, 2, 4, 6, 8], max_runs=2)
    # Runs 2, 4, 6, 8 exceed the cap of two: the gaps at 1 and 3 are written off.
    assert state.high_water == 4 and state.ahead == (6, 6, 8, 8)
    assert state.written_off == 2
    assert state.missing == 4 and state.gaps() == [(5, 5), (7, 7)]
    # A written-off number arriving late is taken for a repeat: loss is never hidden.
    late = merge(state, [1, 5], max_runs=2)
    assert (late.high_water, late.written_off, late.repeated) == (6, 2, 1)
    assert late.missing == 3 and late.gaps() == [(7, 7)]


@given(st.lists(st.lists(st.integers(0, 60), max_size=20), max_size=8))
def test_any_arrival_order_matches_the_reference(batches):
    state, seen, arrived = SourceState(), set(), 0
    for batch in batches:
        state = merge(state, batch)
        seen.update(batch)
        arrived += len(batch)
        assert _view(state) == _reference(seen)
        assert state.repeated == arrived - len(seen)


@given(st.lists(st.lists(st.integers(0, 80), max_size=20), max_size=8))
def test_the_cap_bounds_the_runs_and_never_hides_a_loss(batches):
    state, seen = SourceState(), set()
    for batch in batches:
        state = merge(state, batch, max_runs=3)
        seen.update(batch)
        assert len(state.ahead) <= 6
        assert state.max_seen == max(seen, default=-1)
        assert state.missing >= _reference(seen)[2]
        assert set(range(state.high_water + 1, state.max_seen + 1)) - seen == {
            n for lo, hi in state.gaps() for n in range(lo, hi + 1)
        }
