"""Which analysis frames a segment can take (``worker.core.handover``): grids a segment may start on, and
whether kept frames are exactly the ones a reader would yield for a plan's targets."""

from __future__ import annotations

from fractions import Fraction

from worker.core.handover import Grids, Kept, cover, grid_hit
from worker.core.sampling import sample_times


def test_grid_hit_matches_sample_times() -> None:
    for fps in (Fraction(1), Fraction(3), Fraction(2997, 1000), Fraction(1, 3)):
        times = set(sample_times(1234, 60_000, fps))
        for lo in range(1200, 8000, 37):
            hi = lo + 20
            assert grid_hit(1234, fps, lo, hi) == any(lo <= t <= hi for t in times), (fps, lo)


def test_grid_hit_never_before_the_start() -> None:
    assert not grid_hit(5000, Fraction(1), 0, 4999)
    assert grid_hit(5000, Fraction(1), 4990, 5000)


def test_a_cut_opens_a_grid_and_ends_the_one_before_after_the_hold() -> None:
    g = Grids(0, Fraction(1), hold_ms=700)
    assert g.wants(1990, 2000) and not g.wants(2400, 2600)
    g.cut(2400)
    assert g.wants(2390, 2400)  # the new grid's first target
    assert g.wants(2990, 3000)  # the old grid, while the shot after the cut may still prove short
    assert not g.wants(3990, 4000)  # ... but not past the hold
    g.prune(3200)
    assert set(g.alive) == {2400}
    assert not g.wants(2990, 3000) and g.wants(4390, 4400)


def test_a_second_cut_within_the_hold_keeps_the_first_grid() -> None:
    g = Grids(0, Fraction(1), hold_ms=500)
    g.cut(2400)
    g.cut(2700)  # the shot 2400..2700 is short: it joins the grid from 0
    g.prune(3100)
    assert 0 in g.alive and g.wants(2990, 3000)


def test_cover_picks_each_served_frame_once() -> None:
    kept = [Kept(0, 0), Kept(33, 2), Kept(1001, 970), Kept(2000, 1969)]
    assert cover([0, 1000, 2000], kept) == [0, 2, 3]
    assert cover([2, 33], kept) == [1]  # both targets are served by the frame at 33
    assert cover([1], kept) is None  # the frame at 0 (if its PTS was 0.4 or more) or at 33: not known


def test_cover_refuses_a_target_without_its_exact_frame() -> None:
    kept = [Kept(0, 0), Kept(1001, 1001), Kept(2000, 1999)]
    assert cover([0, 1000], kept) is None  # 1000 lies before the range 1001 is known to serve
    assert cover([0, 1995], kept) is None  # the frame at 2000 might not be the first after 1994
    assert cover([0, 3000], kept) is None  # nothing kept that late
    assert cover([], kept) == []
