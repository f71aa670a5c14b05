"""The one definition of step cost (gskd_mm.analysis.step_cost)."""
import math

import pytest
from scipy import stats

from gskd_mm.analysis.step_cost import (MATCHED_MULTIPLE, cost_ratio,
                                        matched_iters, measure_step_cost,
                                        steady_mean)


def test_cost_ratio_is_the_t_interval_of_the_log_ratios():
    base = [10.0, 11.0, 9.5, 10.5, 10.2]
    method = [15.2, 16.4, 14.6, 15.9, 15.1]
    cost = cost_ratio(base, method)
    logs = [math.log(m / b) for b, m in zip(base, method)]
    mean = sum(logs) / len(logs)
    sem = stats.sem(logs)
    low, high = stats.t.interval(0.95, len(logs) - 1, loc=mean, scale=sem)
    assert cost.ratio == pytest.approx(math.exp(mean))
    assert (cost.low, cost.high) == pytest.approx((math.exp(low),
                                                   math.exp(high)))
    assert cost.low < cost.ratio < cost.high
    assert cost.repeats == 5
    assert cost.relative_half_width == pytest.approx(
        max(cost.high / cost.ratio - 1, 1 - cost.low / cost.ratio))


def test_cost_ratio_needs_paired_repeats():
    with pytest.raises(ValueError, match='same number'):
        cost_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match='>= 2'):
        cost_ratio([1.0], [1.0])
    with pytest.raises(ValueError, match='positive'):
        cost_ratio([1.0, 0.0], [1.0, 1.0])


def test_matched_iters_rounds_the_ratio_itself_to_ten():
    assert MATCHED_MULTIPLE == 10
    # 1200 x 1.547 = 1856.4: 1860, where one decimal of the ratio (1.5)
    # would give 1800.
    assert matched_iters(1200, 1.547) == 1860
    assert matched_iters(150, 1.547) == 230  # 232.05
    assert matched_iters(150, 1.5) == 220  # 225: half to even
    assert matched_iters(3, 1.2) == 10  # at least one multiple
    assert matched_iters(40000, 2.9, 100) == 116000


def test_steady_mean_leaves_out_the_start_and_the_last():
    times = [9.0] * 5 + [1.0, 2.0, 3.0] + [9.0]
    assert steady_mean(times) == 2.0
    assert steady_mean([4.0, 6.0]) == 5.0  # too short: all of them


def test_measure_step_cost_interleaves_and_pairs_the_repeats():
    calls = []
    # The machine slows down over the repeats: a paired ratio keeps 2.
    load = iter([1.0, 1.0, 1.5, 1.5, 2.0, 2.0, 3.0, 3.0])

    def run(name, seconds):
        def timed():
            calls.append(name)
            return [seconds * next(load)] * 3
        return timed

    cost = measure_step_cost(run('base', 1.0), run('method', 2.0), 4)
    assert calls == ['base', 'method', 'method', 'base'] * 2
    assert cost.ratio == pytest.approx(2.0)
    assert cost.low == pytest.approx(2.0) and cost.high == pytest.approx(2.0)
    with pytest.raises(ValueError, match='repeats'):
        measure_step_cost(run('base', 1.0), run('method', 2.0), 1)
