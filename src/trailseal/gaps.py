"""A source's numbering: which of its numbers arrived, and which are missing.

A producer (a *source*) numbers its events 0, 1, 2 ... in the order it records them, so
an event lost before it reached the service leaves a hole in the numbers. Per source the
server keeps:

- ``high_water``: the highest n such that every number 0..n arrived; -1 while 0 is
  missing;
- ``ahead``: the numbers seen above ``high_water + 1``, as inclusive runs flattened into
  one sorted list ``[lo1, hi1, lo2, hi2, ...]``. Runs neither touch nor overlap, and the
  first starts above ``high_water + 1``, so everything between ``high_water`` and the
  first run, and between two runs, is a gap.

Runs make the state grow with the number of gaps, not of events, and ``MAX_RUNS`` bounds
even that: past it, the lowest gap is *written off*. ``high_water`` moves over it and its
size is added to ``written_off``, which ``missing`` keeps counting. The oldest gaps are
the least likely to close; a number from a written-off gap that turns up later is taken
for a repeat, so the count errs towards loss and never hides one.

Pure: no I/O.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAX_RUNS = 5_000  # so ``ahead`` holds at most 10,000 numbers


def _runs(ahead: tuple[int, ...]) -> Iterator[tuple[int, int]]:
    return zip(ahead[0::2], ahead[1::2], strict=True)


@dataclass(frozen=True)
class SourceState:
    """What arrived of one source's numbers (see the module docstring)."""

    high_water: int = -1
    ahead: tuple[int, ...] = ()
    written_off: int = 0
    repeated: int = 0  # numbers that arrived again, under a new event id

    @property
    def max_seen(self) -> int:
        """The highest number that arrived (-1: none yet)."""
        return self.ahead[-1] if self.ahead else self.high_water

    @property
    def missing(self) -> int:
        """How many numbers in 0..max_seen did not arrive (written-off ones included)."""
        held = sum(hi - lo + 1 for lo, hi in _runs(self.ahead))
        return self.written_off + self.max_seen - self.high_water - held

    def gaps(self, limit: int | None = None) -> list[tuple[int, int]]:
        """The missing numbers as inclusive ranges, lowest first (the first ``limit``);
        written-off gaps are no longer listed."""
        found: list[tuple[int, int]] = []
        below = self.high_water
        for lo, hi in _runs(self.ahead):
            if limit is not None and len(found) >= limit:
                break
            found.append((below + 1, lo - 1))
            below = hi
        return found


def merge(
    state: SourceState, numbers: Iterable[int], *, max_runs: int = MAX_RUNS
) -> SourceState:
    """``state`` after ``numbers`` arrived, in any order; a number already seen (or seen
    twice among ``numbers``) counts as a repeat and changes nothing else."""
    arrived = list(numbers)
    distinct = sorted(set(arrived))
    repeated = state.repeated + len(arrived) - len(distinct)
    runs = list(_runs(state.ahead))
    starts = [lo for lo, _ in runs]
    fresh = []
    for n in distinct:
        i = bisect_right(starts, n) - 1
        if n <= state.high_water or (i >= 0 and n <= runs[i][1]):
            repeated += 1
        else:
            fresh.append(n)
    merged: list[list[int]] = []
    for lo, hi in heapq.merge(runs, ((n, n) for n in fresh)):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    high_water, written_off = state.high_water, state.written_off
    start = 0
    if merged and merged[0][0] == high_water + 1:
        high_water = merged[0][1]
        start = 1
    for lo, hi in merged[start : max(start, len(merged) - max_runs)]:
        written_off += lo - high_water - 1
        high_water = hi
    kept = merged[max(start, len(merged) - max_runs) :]
    return SourceState(
        high_water, tuple(n for run in kept for n in run), written_off, repeated
    )
