# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo's statistics: means over seeds, paired differences.

Each method's runs summarised over seeds, and the paired comparisons of
the methods (each a method minus its baseline, paired by seed, with a
Student t interval). The tables that show them: :mod:`.tables`.
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

from .methods import NO_KD, MethodKey, matched_budgets, method_spec
from .results import (Comparison, ComparisonKind, DatasetInfo, DemoSummary,
                      MethodSummary, PairedInterval, RunResult, Settings,
                      Stat, TeacherResult)

# The per-run numbers that are summarised and compared, paired by seed:
# mIoU, and the structural gaps (descriptor KL and mean |cosine
# difference|) of the student's own features and after its GSKD projector.
METRICS = ('miou', 'gap', 'gap_cos', 'gap_proj', 'gap_proj_cos')
#: Runs by method.
Runs = Dict[MethodKey, List[RunResult]]


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


def pairing_check(runs: Runs) -> Dict[str, bool]:
    """Whether the runs of each seed started alike and saw the same data.

    Args:
        runs (dict[MethodKey, list[RunResult]]): Per method, its runs.

    Returns:
        dict[str, bool]: ``student`` (every method's initial student equals
        the others' of the same seed) and ``data`` (the same first batches).
    """
    by_seed: Dict[int, List[RunResult]] = {}
    for method_runs in runs.values():
        for run in method_runs:
            by_seed.setdefault(run.seed, []).append(run)
    return {
        what: all(
            len({getattr(run, f'{what}_digest')
                 for run in seed_runs}) == 1 for seed_runs in by_seed.values())
        for what in ('student', 'data')
    }


#: A paired comparison to make: the method, its baseline, the kind.
Pair = Tuple[MethodKey, MethodKey, ComparisonKind]


def comparisons(methods: Sequence[MethodKey],
                iters: Optional[int] = None,
                costs: Optional[Dict[MethodKey, float]] = None,
                pass_costs: Optional[Dict[MethodKey, float]] = None
                ) -> List[Pair]:
    """The paired comparisons of a set of methods: (method, baseline, kind).

    Of the kinds of :class:`.ComparisonKind`, those whose both methods
    ran: every GSKD recipe or variant against its base; a balanced variant
    against its fixed twin; every distillation method against no KD at
    equal iterations and, given the schedule and the costs, at equal
    compute (:func:`.methods.matched_budgets`: a cached method's two
    ways, its cache pass amortised and not); no KD at twice the iterations
    of another no-KD run against it.

    Args:
        methods (Sequence[MethodKey]): The methods.
        iters (int, optional): The schedule of the methods without their
            own.
        costs (dict[MethodKey, float], optional): Step cost ratios.
        pass_costs (dict[MethodKey, float], optional): Cached methods'
            cache passes in no-KD iterations.

    Returns:
        list[tuple[MethodKey, MethodKey, ComparisonKind]]: The pairs, in
        the order of ``methods``.
    """
    pairs = []
    no_kd = {k.iters or iters: k for k in methods if k.is_no_kd}
    for key in methods:
        if key.is_no_kd:
            twice = no_kd.get(2 * (key.iters or iters or 0))
            if twice is not None:
                pairs.append((twice, key, ComparisonKind.DOUBLING))
            continue
        baseline = method_spec(key).baseline
        if baseline in methods:
            pairs.append((key, baseline, ComparisonKind.BASE))
        if key.fixed_twin is not None and key.fixed_twin in methods:
            pairs.append((key, key.fixed_twin, ComparisonKind.FIXED))
        if NO_KD in methods:
            pairs.append((key, NO_KD, ComparisonKind.KD))
        if costs and key in costs and iters:
            budgets = matched_budgets(key, iters, costs, pass_costs)
            for kind, budget in budgets.items():
                matched = no_kd.get(budget)
                if matched is not None:
                    pairs.append((key, matched, ComparisonKind(kind)))
    return pairs


def comparison_name(method: MethodKey, baseline: MethodKey,
                    kind: ComparisonKind) -> str:
    """The name of a comparison in the summary: the method's against its
    base, else ``<method> vs <baseline>`` (keys as written)."""
    return str(method) if kind is ComparisonKind.BASE else \
        f'{method} vs {baseline}'


def paired_differences(runs: Runs,
                       iters: Optional[int] = None,
                       costs: Optional[Dict[MethodKey, float]] = None,
                       confidence: float = 0.95,
                       pass_costs: Optional[Dict[MethodKey, float]] = None
                       ) -> Dict[str, Comparison]:
    """Each method minus its baselines, paired by seed (see
    :func:`comparisons`).

    Args:
        runs (dict[MethodKey, list[RunResult]]): Per method, its runs.
        iters (int, optional): The schedule of the methods without their
            own.
        costs (dict[MethodKey, float], optional): Step cost ratios.
        confidence (float): Coverage of the t intervals. Defaults to 0.95.
        pass_costs (dict[MethodKey, float], optional): Cached methods'
            cache passes in no-KD iterations.

    Returns:
        dict[str, Comparison]: Per comparison (see :func:`comparison_name`),
        its interval for every metric defined in both (a base recipe has no
        projected gap), on the seeds both ran.
    """
    out = {}
    for key, base, kind in comparisons(list(runs), iters, costs,
                                       pass_costs):
        a = {r.seed: r for r in runs[key]}
        b = {r.seed: r for r in runs[base]}
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        comparison = Comparison(key, base, kind)
        for metric in METRICS:
            pairs = [(getattr(a[s], metric), getattr(b[s], metric))
                     for s in seeds]
            if any(x is None or y is None for x, y in pairs):
                continue
            comparison.intervals[metric] = paired_t_interval(
                [x for x, _ in pairs], [y for _, y in pairs], confidence)
        out[comparison_name(key, base, kind)] = comparison
    return out


def summarise_method(key: MethodKey, runs: List[RunResult], iters: int,
                     majority_class_miou: float) -> MethodSummary:
    """A method's runs and their statistics over seeds (``iters``: the
    demo's schedule, unless the method has its own)."""
    spec = method_spec(key)
    shares = [r.gskd_grad_share for r in runs]
    return MethodSummary(
        label=spec.label,
        config=osp.join('projects', 'gskd_demo', 'configs', spec.config),
        loss_gskd=spec.loss_gskd,
        baseline=spec.baseline,
        iters=spec.iters or iters,
        stats={
            metric: Stat.of([getattr(r, metric) for r in runs])
            for metric in METRICS
        },
        gskd_grad_share=None if any(x is None for x in shares) else float(
            np.mean(shares)),
        wall_s_mean=float(np.mean([r.wall_s for r in runs])),
        iter_ms=float(np.median([r.iter_ms for r in runs])),
        gskd_ms=float(np.median([r.gskd_ms for r in runs])),
        collapsed=sum(r.miou <= majority_class_miou + 0.5 for r in runs),
        runs=runs)


def summarise(settings: Settings,
              dataset: DatasetInfo,
              teacher: TeacherResult,
              runs: Runs,
              init_gaps: List[Dict[str, float]],
              majority_class_miou: float,
              params: Dict[str, int],
              total_s: float,
              costs: Optional[Dict[MethodKey, float]] = None,
              pass_costs: Optional[Dict[MethodKey, float]] = None
              ) -> DemoSummary:
    """Collect everything of the table and figures (``costs``: the step
    cost ratios of compute-matched runs; ``pass_costs``: the cached
    methods' cache passes in no-KD iterations)."""
    return DemoSummary(
        dataset=dataset,
        settings=settings,
        params=params,
        teacher=teacher,
        majority_class_miou=majority_class_miou,
        init_gap={
            metric: Stat.of([g[metric] for g in init_gaps])
            for metric in ('kl', 'cos')
        },
        methods={
            key: summarise_method(key, method_runs, settings.iters,
                                  majority_class_miou)
            for key, method_runs in runs.items()
        },
        paired=paired_differences(
            runs, settings.iters, costs, pass_costs=pass_costs),
        pairing_check=pairing_check(runs),
        total_wall_s=total_s,
        costs=dict(costs or {}),
        pass_costs=dict(pass_costs or {}))


def against_no_kd(
    summary: DemoSummary
) -> Dict[MethodKey, Dict[ComparisonKind, Comparison]]:
    """Every distillation method's comparisons with no KD: by method, in
    the order they were made, those of kind ``KD`` (equal iterations),
    ``COMPUTE`` and ``COMPUTE_AMORTISED`` (equal compute) that ran."""
    found: Dict[MethodKey, Dict[ComparisonKind, Comparison]] = {}
    for d in summary.paired.values():
        if d.kind in (ComparisonKind.KD, ComparisonKind.COMPUTE,
                      ComparisonKind.COMPUTE_AMORTISED):
            found.setdefault(d.method, {})[d.kind] = d
    return found
