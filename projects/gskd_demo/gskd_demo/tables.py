# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo's tables and notes, in markdown, from its summary (the
statistics: :mod:`.stats`)."""
import math
from typing import List, Optional, Sequence

import numpy as np
from scipy import stats

from .methods import NO_KD, MethodKey
from .results import ComparisonKind, DemoSummary, PairedInterval, Stat
from .stats import against_no_kd


def _fmt(stat: Stat, digits: int, scale: float = 1.0) -> str:
    if stat.mean is None:
        return '–'
    if stat.std is None:
        return f'{scale * stat.mean:.{digits}f}'
    return f'{scale * stat.mean:.{digits}f} ± {scale * stat.std:.{digits}f}'


def _fmt_interval(d: Optional[PairedInterval],
                  digits: int,
                  scale: float = 1.0) -> str:
    if d is None:
        return '–'
    if math.isnan(d.low):
        return f'{scale * d.mean:+.{digits}f}'
    return (f'{scale * d.mean:+.{digits}f} [{scale * d.low:+.{digits}f}'
            f', {scale * d.high:+.{digits}f}]')


def methods_table(summary: DemoSummary) -> List[str]:
    """One row per model: mIoU, gaps, share and step time."""
    teacher, methods = summary.teacher, summary.methods
    no_kd = methods.get(NO_KD)
    lines = [
        '| model | val mIoU (%) | gap KL (×1e3) | gap cos (×1e2) | '
        'projected gap KL (×1e3) | projected gap cos (×1e2) | n | '
        'Δ mIoU vs no KD | GSKD grad share | step (ms) | '
        'GSKD loss fwd+bwd (ms / step) |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
        f'| teacher, DeepLabV3-R18 w16 '
        f'({summary.params["teacher"] / 1e6:.2f} M) | {teacher.miou:.2f} | '
        f'0 | 0 | | | 1 | | | {teacher.iter_ms:.0f} | |',
    ]
    for key, m in methods.items():
        stats = m.stats
        delta = ('' if no_kd is None or key == NO_KD else
                 f'{stats["miou"].mean - no_kd.stats["miou"].mean:+.2f}')
        gskd = f'{m.gskd_ms:.1f}' if m.gskd_ms > 0 else ''
        share = '' if m.gskd_grad_share is None else \
            f'{m.gskd_grad_share:.3g}'
        lines.append(
            f'| student {m.label} | {_fmt(stats["miou"], 2)} | '
            f'{_fmt(stats["gap"], 2, 1e3)} | '
            f'{_fmt(stats["gap_cos"], 2, 1e2)} | '
            f'{_fmt(stats["gap_proj"], 2, 1e3)} | '
            f'{_fmt(stats["gap_proj_cos"], 2, 1e2)} | {m.n} | {delta} | '
            f'{share} | {m.iter_ms:.0f} | {gskd} |')
    init = summary.init_gap
    lines += [
        f'| student before training | | {_fmt(init["kl"], 2, 1e3)} | '
        f'{_fmt(init["cos"], 2, 1e2)} | | | | | | | |',
        f'| teacher network untrained | {teacher.untrained_miou:.2f} | | | '
        '| | 1 | | | | |',
        f'| majority class everywhere | {summary.majority_class_miou:.2f} '
        '| | | | | | | | | |'
    ]
    return lines


def pays_table(summary: DemoSummary) -> List[str]:
    """Does distillation pay? Every method against no KD, at equal
    iterations and, where it ran, at equal compute (a cached method's
    cache reused, and its cache pass amortised over the run)."""
    gains = {
        key: found
        for key, found in against_no_kd(summary).items()
        if ComparisonKind.KD in found
    }
    if not gains:
        return []
    methods = summary.methods
    lines = [
        '',
        '| method − no KD, same seeds | step cost (× no KD) | '
        'Δ val mIoU (%), equal iterations [95 % CI] | no KD at equal '
        'compute (iterations) | Δ val mIoU (%), equal compute [95 % CI] '
        '| no KD at equal compute, cache pass amortised (iterations) | '
        'Δ val mIoU (%), equal compute, pass amortised [95 % CI] | n |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for key, found in gains.items():
        d = found[ComparisonKind.KD]
        cost = summary.costs.get(key)
        cells = []
        for kind in (ComparisonKind.COMPUTE,
                     ComparisonKind.COMPUTE_AMORTISED):
            matched = found.get(kind)
            cells += [
                '' if matched is None else
                str(methods[matched.baseline].iters),
                _fmt_interval(matched and matched.intervals.get('miou'), 2)
            ]
        lines.append(
            f'| {methods[key].label} | '
            f'{"" if cost is None else f"{cost:.2f}"} | '
            f'{_fmt_interval(d.intervals.get("miou"), 2)} | ' +
            ' | '.join(cells) + f' | {d.intervals["miou"].n} |')
    return lines


def schedules_table(summaries: Sequence[DemoSummary],
                    methods: Sequence[MethodKey]) -> str:
    """Does distillation pay, schedule by schedule: every method's mIoU and
    its gain over no KD at equal iterations and at equal compute.

    Args:
        summaries (Sequence[DemoSummary]): One per schedule.
        methods (Sequence[MethodKey]): The distillation methods to show.

    Returns:
        str: A markdown table, a row per method and schedule that ran it.
    """
    lines = [
        '| method | iterations | val mIoU (%) | Δ vs no KD, equal iterations '
        '[95 % CI] | no KD at equal compute: iterations, mIoU | Δ vs no KD, '
        'equal compute [95 % CI] | no KD at equal compute, cache pass '
        'amortised: iterations, mIoU | Δ vs no KD, equal compute, pass '
        'amortised [95 % CI] | n |', '|---|---|---|---|---|---|---|---|---|'
    ]
    schedules = [(summary, against_no_kd(summary))
                 for summary in sorted(summaries,
                                       key=lambda s: s.settings.iters)]
    for key in methods:
        for summary, gains in schedules:
            if key not in summary.methods:
                continue
            found = gains.get(key, {})
            kd = found.get(ComparisonKind.KD)
            cells = []
            for kind in (ComparisonKind.COMPUTE,
                         ComparisonKind.COMPUTE_AMORTISED):
                compute = found.get(kind)
                matched = compute and summary.methods[compute.baseline]
                cells += [
                    '' if not matched else
                    f'{matched.iters}, {_fmt(matched.stats["miou"], 2)}',
                    _fmt_interval(compute and compute.intervals['miou'], 2)
                ]
            lines.append(
                f'| {summary.methods[key].label} | {summary.settings.iters} '
                f'| {_fmt(summary.methods[key].stats["miou"], 2)} | '
                f'{_fmt_interval(kd and kd.intervals["miou"], 2)} | ' +
                ' | '.join(cells) + f' | {summary.methods[key].n} |')
    return '\n'.join(lines) + '\n'


def paired_table(summary: DemoSummary) -> List[str]:
    """One row per paired comparison of a method with its base, its fixed
    twin, or no KD with half its iterations, with the intervals."""
    paired = [
        d for d in summary.paired.values()
        if d.kind in (ComparisonKind.BASE, ComparisonKind.FIXED,
                      ComparisonKind.DOUBLING)
    ]
    if not paired:
        return []
    methods = summary.methods
    lines = [
        '',
        '| method − its base, same seeds | Δ val mIoU (%) [95 % CI] '
        '| Δ gap KL (×1e3) [95 % CI] | Δ gap cos (×1e2) [95 % CI] '
        '| Δ gap KL / base gap | n |',
        '|---|---|---|---|---|---|',
    ]
    for d in paired:
        method, base = methods[d.method], methods[d.baseline]
        gap, base_gap = d.intervals.get('gap'), base.stats['gap'].mean
        rel = gap.mean / base_gap if gap and base_gap else float('nan')
        lines.append(
            f'| {method.label} − {base.label} | '
            f'{_fmt_interval(d.intervals.get("miou"), 2)} | '
            f'{_fmt_interval(gap, 2, 1e3)} | '
            f'{_fmt_interval(d.intervals.get("gap_cos"), 2, 1e2)} | '
            f'{100 * rel:+.0f} % | {d.intervals["miou"].n} |')
    return lines


def table_notes(summary: DemoSummary) -> List[str]:
    """What the table's numbers are, in words."""
    dataset, settings = summary.dataset, summary.settings
    check = summary.pairing_check
    collapsed = {
        m.label: m.collapsed
        for m in summary.methods.values() if m.collapsed
    }
    return [
        '',
        f'Synthetic Scenes, {dataset.num_train} train / {dataset.num_val} '
        f'val images of {dataset.img_size}x{dataset.img_size}, '
        f'{dataset.num_classes} classes; features {dataset.img_size // 4}x'
        f'{dataset.img_size // 4} (output stride 4). Student DeepLabV3-R18 '
        f'w8 ({summary.params["student"] / 1e6:.2f} M parameters), '
        f'{settings.iters} iterations of batch {settings.batch_size} per '
        f'run; teacher {settings.teacher_iters} iterations of batch '
        f'{settings.teacher_batch_size}. mIoU and gaps: mean ± sample std '
        'over seeds. Structural gaps between the student\'s decode-head '
        'features and the teacher\'s on the val images, on the same fixed '
        'draws (8 labelled pixels per present class) for every method '
        '(gskd_mm.analysis.structural_gaps): gap KL is GSKD\'s descriptor '
        'KL (N 8, S -1, T 1, the authors\' length normalisation), gap cos '
        'the mean absolute difference of the two cosine self-similarity '
        'matrices; 0 means the same structure. "Projected": the student\'s '
        'features after the recipe\'s gskd_projector, where GSKD matches '
        'them (undefined, –, for recipes without one). GSKD grad share: '
        'the L2 norm of the GSKD term\'s gradient over the student over '
        'that of the task cross-entropy, on the first batch before '
        'training (LossGradientHook), mean over seeds. Paired rows: mean '
        'difference over seeds with a Student t 95 % interval; every method '
        'of a seed starts from the same student weights and sees the same '
        'batches (checked: initial students '
        f'{"equal" if check["student"] else "DIFFER"}, first batches '
        f'{"equal" if check["data"] else "DIFFER"}). Runs at the '
        'majority-class mIoU (collapsed): '
        f'{collapsed if collapsed else "none"}. Step: median wall time of '
        f'a training iteration on {settings.torch_threads} CPU thread(s). '
        'GSKD loss fwd+bwd: median time per step inside GSKDLoss.' + (
            '' if not summary.costs else
            ' Step cost: the mean CPU time of a whole training iteration '
            '(batch, hooks, step) of the method over that of no KD, '
            'measured once and fixed before the runs '
            '(projects/gskd_demo/step_costs.json); no KD at equal compute '
            'trains the schedule times that cost, rounded to 10, with '
            'the same schedule shape (warm-up and decay scaled); a cached '
            'method\'s one-off cache pass (its CPU time over the mean no-KD '
            'iteration) is added in the "pass amortised" columns, and left '
            'out in the others (the cache reused over many runs).'),
        f'Total wall time: {summary.total_wall_s:.0f} s.',
    ]


def markdown_table(summary: DemoSummary) -> str:
    """The results as markdown tables with notes."""
    return '\n'.join(
        methods_table(summary) + pays_table(summary) + paired_table(summary)
        + table_notes(summary)) + '\n'


def resolution_note(summary: DemoSummary, study_seeds: int,
                    study_methods: int) -> str:
    """What a demo's seeds can and cannot resolve, and the full study.

    Args:
        summary (DemoSummary): The demo's summary (its paired differences).
        study_seeds (int): Seeds of the full study.
        study_methods (int): Methods of the full study.

    Returns:
        str: For every paired comparison, its mIoU interval and whether it
        excludes 0; the smallest difference these seeds resolve; how much
        the full study narrows it; the full study's command and its time
        at this run's pace.
    """
    seeds, methods = summary.settings.seeds, summary.methods
    lines, halves = [], []
    for d in summary.paired.values():
        miou, gap = d.intervals.get('miou'), d.intervals.get('gap')
        if miou is None or math.isnan(miou.low):
            continue
        halves.append(miou.half_width)
        base = methods[d.baseline]
        lines.append(
            f'  {methods[d.method].label} − {base.label}: mIoU '
            f'{_fmt_interval(miou, 2)}, ' +
            ('resolved (the interval excludes 0)' if miou.resolved else
             'not resolved (the interval contains 0)') +
            f'; gap KL ±{100 * gap.half_width / base.stats["gap"].mean:.0f}'
            ' % of the base\'s')
    out = []
    if halves:
        # The t interval's half-width scales as t(n - 1) / sqrt(n).
        narrowing = (stats.t.ppf(0.975, seeds - 1) / math.sqrt(seeds)) / (
            stats.t.ppf(0.975, study_seeds - 1) / math.sqrt(study_seeds))
        smallest = float(np.median(halves))
        out += [f'What {seeds} seeds resolve (paired 95 % intervals):'] + \
            lines + [
                f'With {seeds} seeds a difference of mIoU is told from 0 only '
                f'when larger than about ±{smallest:.1f} points (the median '
                'half-width above); smaller ones, such as the effects the '
                'full study measures for GSKD, are not. The full study\'s '
                f'{study_seeds} seeds narrow every interval about '
                f'{narrowing:.1f}x (to about ±{smallest / narrowing:.1f} '
                'points).'
            ]
    runs = [r for m in methods.values() for r in m.runs]
    workers = summary.settings.workers
    pace = float(np.mean([r.wall_s for r in runs])) / workers
    total = study_seeds * study_methods
    out.append(
        f'The full study: `make study` (python projects/gskd_demo/demo.py '
        f'--study: {study_seeds} seeds, every method, every GSKD variant on '
        f'every base, the balancer included; {total} runs). At this run\'s '
        f'pace ({pace:.1f} s a run with {workers} worker(s)) at least '
        f'{total * pace / 60:.0f} min: its CWD and CIRKD runs are slower. '
        'Its measured time: projects/gskd_demo/README.md, "The full '
        'study".')
    return '\n'.join(out)
