# Copyright (c) gskd-mm contributors. All rights reserved.
"""Paired comparison of two methods run on the same seeds."""
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats


@dataclass
class PairedInterval:
    """Mean paired difference and its t confidence interval.

    Attributes:
        mean (float): Mean of ``a - b`` over the pairs.
        low (float): Lower end of the interval (NaN for a single pair).
        high (float): Upper end of the interval (NaN for a single pair).
        n (int): Number of pairs.
    """
    mean: float
    low: float
    high: float
    n: int

    @property
    def resolved(self) -> bool:
        """Whether the interval excludes 0 (False for a single pair)."""
        return self.low > 0 or self.high < 0

    @property
    def half_width(self) -> float:
        """Half the interval's width (NaN for a single pair)."""
        return (self.high - self.low) / 2


def paired_t_interval(a: Sequence[float],
                      b: Sequence[float],
                      confidence: float = 0.95) -> PairedInterval:
    """Student's t interval of the mean paired difference ``a - b``.

    ``a[i]`` and ``b[i]`` must come from the same seed (same initialisation
    and data order), so that the seed's own effect cancels in the
    difference: ``mean(d) +- t_{n-1, (1 + confidence) / 2} * sd(d) /
    sqrt(n)`` with ``d = a - b`` and ``sd`` the sample standard deviation.

    Args:
        a (Sequence[float]): One value per seed, e.g. a GSKD recipe's mIoU.
        b (Sequence[float]): The paired values, e.g. its base recipe's.
        confidence (float): Coverage of the interval, in (0, 1). Defaults
            to 0.95.

    Returns:
        PairedInterval: Mean difference, interval ends and n; the ends are
        NaN when there is a single pair (no spread to estimate).

    Raises:
        ValueError: If the sequences differ in length or are empty, or if
            ``confidence`` is not in (0, 1).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError('paired values need two non-empty sequences of the '
                         f'same length, one value per seed; got {a.shape} '
                         f'and {b.shape}')
    if not 0 < confidence < 1:
        raise ValueError(f'confidence must be in (0, 1), got {confidence!r}')
    diff = a - b
    n = diff.size
    mean = float(diff.mean())
    if n < 2:
        return PairedInterval(mean, float('nan'), float('nan'), n)
    half = float(
        stats.t.ppf(
            (1 + confidence) / 2, n - 1) * diff.std(ddof=1) / np.sqrt(n))
    return PairedInterval(mean, mean - half, mean + half, n)
