# Copyright (c) gskd-mm contributors. All rights reserved.
"""The step cost of a distillation method: the one definition that the
compute-matched baselines use (the demo's ``step_costs.json`` and
``tools/analysis_tools/kd_budget.py --by time``).

A step's cost is the process CPU time of whole iterations of the training
loop (loading the batch, the hooks and the step) on one thread
(:data:`ITERATION_CLOCK`). A method's cost is the ratio of its iteration to
its student's alone, measured in repeats that interleave the two (so that
a busy machine slows both alike): one ratio per repeat, and their geometric
mean with a 95 % t interval on the log ratio (:func:`cost_ratio`). The
student-only iterations a run buys are its iterations times that ratio,
rounded to :data:`MATCHED_MULTIPLE` (:func:`matched_iters`).

The median wall time of ``train_step`` that
:func:`~gskd_mm.analysis.step_benchmark.time_steps` measures is a different
quantity (the step alone, no loading, wall clock): the benchmarks report
it, and no budget uses it.
"""
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch

__all__ = [
    'ITERATION_CLOCK', 'MATCHED_MULTIPLE', 'StepCost', 'cost_ratio',
    'iteration_seconds', 'matched_iters', 'measure_step_cost',
    'steady_mean'
]

#: The clock of a step's cost: CPU seconds of this process.
ITERATION_CLOCK: Callable[[], float] = time.process_time
#: Student-only iterations are rounded to a multiple of this.
MATCHED_MULTIPLE = 10
#: Iterations left out at the start of a run (allocations, lazy set-up).
WARMUP_ITERS = 5


@dataclass
class StepCost:
    """A method's iteration over its student's alone, with its interval.

    Attributes:
        ratio (float): Geometric mean of the per-repeat ratios.
        low (float): Lower end of the interval.
        high (float): Upper end of the interval.
        repeats (int): Interleaved repeats the ratio comes from.
        confidence (float): Of the interval. Defaults to 0.95.
    """
    ratio: float
    low: float
    high: float
    repeats: int
    confidence: float = 0.95

    @property
    def relative_half_width(self) -> float:
        """The interval's larger side, as a fraction of the ratio."""
        return max(self.high / self.ratio - 1, 1 - self.low / self.ratio)

    def to_dict(self) -> Dict[str, float]:
        """The fields, for a JSON file."""
        return asdict(self)


def cost_ratio(base: Sequence[float],
               method: Sequence[float],
               confidence: float = 0.95) -> StepCost:
    """The cost ratio of paired, interleaved measurements.

    Args:
        base (Sequence[float]): The student alone's iteration, per repeat.
        method (Sequence[float]): The method's iteration, same repeats.
        confidence (float): Of the t interval. Defaults to 0.95.

    Returns:
        StepCost: ``exp(mean log(method / base))`` and its t interval
        (``repeats - 1`` degrees of freedom).
    """
    if len(base) != len(method) or len(base) < 2:
        raise ValueError('cost_ratio needs the same number (>= 2) of '
                         f'repeats of both, got {len(base)} and '
                         f'{len(method)}')
    if min(base) <= 0 or min(method) <= 0:
        raise ValueError('iteration times must be positive')
    from scipy.stats import t  # only when measuring
    logs = [math.log(m / b) for b, m in zip(base, method)]
    mean = statistics.fmean(logs)
    half = t.ppf(0.5 + confidence / 2, len(logs) - 1) * \
        statistics.stdev(logs) / math.sqrt(len(logs))
    return StepCost(
        math.exp(mean), math.exp(mean - half), math.exp(mean + half),
        len(logs), confidence)


def matched_iters(iters: int,
                  ratio: float,
                  multiple: int = MATCHED_MULTIPLE) -> int:
    """The student-only iterations that ``iters`` iterations of a method of
    cost ``ratio`` buy: ``iters x ratio`` rounded to the nearest
    ``multiple`` (at least one ``multiple``)."""
    return max(multiple, multiple * round(iters * ratio / multiple))


def steady_mean(times: Sequence[float], skip: int = WARMUP_ITERS) -> float:
    """The mean of a run's iteration times without its first ``skip`` and
    its last (which the validation and checkpoint follow); all of them if
    fewer."""
    kept = list(times[skip:-1]) or list(times)
    return statistics.fmean(kept)


def iteration_seconds(model: torch.nn.Module, optim_wrapper,
                      batches: Iterator[dict], iters: int) -> List[float]:
    """CPU seconds of ``iters`` whole iterations: the next batch, then the
    model's ``train_step`` (:data:`ITERATION_CLOCK`)."""
    times = []
    for _ in range(iters):
        start = ITERATION_CLOCK()
        model.train_step(next(batches), optim_wrapper)
        times.append(ITERATION_CLOCK() - start)
    return times


def measure_step_cost(base: Callable[[], List[float]],
                      method: Callable[[], List[float]],
                      repeats: int,
                      threads: Optional[int] = 1) -> StepCost:
    """Measure a method's step cost over its student's, interleaved.

    Args:
        base (Callable): Runs some iterations of the student alone and
            returns their CPU seconds (e.g. :func:`iteration_seconds`).
        method (Callable): The same, of the method.
        repeats (int): Repeats; each runs both, in alternating order.
        threads (int, optional): Torch threads while measuring. Defaults to
            1 (the definition); None keeps the current number.

    Returns:
        StepCost: The ratio of the repeats' mean iterations.
    """
    if repeats < 2:
        raise ValueError(f'repeats must be >= 2 for an interval, got '
                         f'{repeats}')
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    samples: Dict[str, List[float]] = dict(base=[], method=[])
    try:
        for repeat in range(repeats):
            order = [('base', base), ('method', method)]
            for name, run in order[::-1] if repeat % 2 else order:
                samples[name].append(statistics.fmean(run()))
    finally:
        torch.set_num_threads(before)
    return cost_ratio(samples['base'], samples['method'])
