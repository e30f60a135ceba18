from __future__ import annotations

import pytest

from spotpatch.search import FrontPoint, hypervolume, knee_point, pareto_front


def P(n, m, b):
    return FrontPoint(n, m, b)


def test_front_keeps_only_non_dominated_points():
    points = [P(0, 0.3, 100), P(1, 0.2, 200), P(2, 0.5, 300), P(3, 0.5, 300), P(4, 0.4, 50)]
    assert pareto_front(points) == [P(4, 0.4, 50), P(2, 0.5, 300)]
    assert pareto_front([]) == []


def test_hypervolume_is_the_mean_best_map_over_budgets():
    # One point at half the full size with mAP 0.4: best mAP 0.4 for budgets in [0.5, 1].
    assert hypervolume([P(0, 0.4, 50)], 100) == pytest.approx(0.2)
    # Adding a dominated point changes nothing; a free better point counts fully.
    assert hypervolume([P(0, 0.4, 50), P(1, 0.3, 60)], 100) == pytest.approx(0.2)
    assert hypervolume([P(0, 0.4, 50), P(1, 0.6, 0)], 100) == pytest.approx(0.6)
    two = hypervolume([P(0, 0.2, 10), P(1, 0.5, 60)], 100)
    assert two == pytest.approx(0.9 * 0.2 + 0.4 * 0.3)
    with pytest.raises(ValueError):
        hypervolume([P(0, 0.1, 1)], 0)


def test_knee_is_where_more_bytes_stop_paying():
    front = [P(0, 0.10, 10), P(1, 0.45, 20), P(2, 0.48, 60), P(3, 0.50, 100)]
    assert knee_point(front, 100) == P(1, 0.45, 20)
    assert knee_point([P(0, 0.1, 1)], 100) == P(0, 0.1, 1)
