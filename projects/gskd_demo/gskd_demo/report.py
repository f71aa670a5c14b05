# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo's summary and table: means over seeds, paired differences."""
import math
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

from .methods import method_spec
from .stats import paired_t_interval


# The per-run numbers that are summarised and compared, paired by seed:
# mIoU, and the structural gaps (descriptor KL and mean |cosine
# difference|) of the student's own features and after its GSKD projector.
METRICS = ('miou', 'gap', 'gap_cos', 'gap_proj', 'gap_proj_cos')
# The key suffix of a balanced sweep variant (its fixed twin without it).
BALANCED = '-bal'


def _mean_std(values: List[Optional[float]]) -> Dict[str, Optional[float]]:
    if any(v is None for v in values) or not values:
        return dict(mean=None, std=None)
    values = np.asarray(values, dtype=np.float64)
    return dict(
        mean=float(values.mean()),
        std=float(values.std(ddof=1)) if len(values) > 1 else None)


def pairing_check(runs: Dict[str, list]) -> Dict[str, bool]:
    """Whether the runs of each seed started alike and saw the same data.

    Args:
        runs (dict[str, list]): Per method, the run results (with ``seed``,
            ``student_digest`` and ``data_digest``).

    Returns:
        dict[str, bool]: ``student`` (every method's initial student equals
        the others' of the same seed) and ``data`` (the same first batches).
    """
    by_seed: Dict[int, List[dict]] = {}
    for method_runs in runs.values():
        for run in method_runs:
            by_seed.setdefault(run['seed'], []).append(run)
    return {
        what:
        all(
            len({run[f'{what}_digest']
                 for run in seed_runs}) == 1 for seed_runs in by_seed.values())
        for what in ('student', 'data')
    }


def comparisons(methods: Sequence[str]) -> List[Tuple[str, str]]:
    """The paired comparisons of a set of methods: (method, baseline).

    Every GSKD recipe or variant against its base recipe; a balanced
    variant also against the same variant at its fixed weight, when both
    ran.

    Args:
        methods (Sequence[str]): Method keys (see :func:`.method_spec`).

    Returns:
        list[tuple[str, str]]: The pairs, in the order of ``methods``.
    """
    pairs = []
    for key in methods:
        spec = method_spec(key)
        if spec.baseline in methods:
            pairs.append((key, spec.baseline))
        fixed = key[:-len(BALANCED)]
        if spec.balancer is not None and key.endswith(BALANCED) \
                and fixed in methods:
            pairs.append((key, fixed))
    return pairs


def paired_differences(runs: Dict[str, list],
                       confidence: float = 0.95) -> Dict[str, dict]:
    """Each method minus its baseline, paired by seed (see
    :func:`comparisons`).

    Args:
        runs (dict[str, list]): Per method, the run results (``seed`` and
            the :data:`METRICS`).
        confidence (float): Coverage of the t intervals. Defaults to 0.95.

    Returns:
        dict[str, dict]: Per comparison (keyed by the method, or
        ``<method> vs <baseline>`` for a balanced variant against its fixed
        weight): ``method``, ``baseline`` and, for every metric defined in
        both (a base recipe has no projected gap), ``mean``, ``low``,
        ``high``, ``n``.
    """
    out = {}
    for key, base in comparisons(list(runs)):
        a = {r['seed']: r for r in runs[key]}
        b = {r['seed']: r for r in runs[base]}
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        name = key if base == method_spec(key).baseline \
            else f'{key} vs {base}'
        out[name] = dict(method=key, baseline=base)
        for metric in METRICS:
            if any(a[s].get(metric) is None or b[s].get(metric) is None
                   for s in seeds):
                continue
            interval = paired_t_interval([a[s][metric] for s in seeds],
                                         [b[s][metric] for s in seeds],
                                         confidence)
            out[name][metric] = interval._asdict()
    return out


def summarise(settings: dict, dataset: dict, teacher: dict, runs: Dict[str,
                                                                       list],
              init_gaps: List[Dict[str, float]], majority_class_miou: float,
              params: Dict[str, int], total_s: float) -> dict:
    """Collect everything of the table into one JSON-able dict."""
    methods = {}
    for key, method_runs in runs.items():
        spec = method_spec(key)
        method = dict(
            label=spec.label,
            config=osp.join('projects', 'gskd_demo', 'configs', spec.config),
            loss_gskd=spec.loss_gskd,
            baseline=spec.baseline,
            n=len(method_runs))
        for metric in METRICS:
            stats = _mean_std([r.get(metric) for r in method_runs])
            method[f'{metric}_mean'] = stats['mean']
            method[f'{metric}_std'] = stats['std']
        shares = [r.get('gskd_grad_share') for r in method_runs]
        method.update(
            gskd_grad_share=None if any(x is None for x in shares) else
            float(np.mean(shares)),
            wall_s_mean=float(np.mean([r['wall_s'] for r in method_runs])),
            iter_ms=float(np.median([r['iter_ms'] for r in method_runs])),
            gskd_ms=float(np.median([r['gskd_ms'] for r in method_runs])),
            collapsed=sum(r['miou'] <= majority_class_miou + 0.5
                          for r in method_runs),
            runs=method_runs)
        methods[key] = method
    return dict(
        dataset=dataset,
        settings=settings,
        params=params,
        teacher=teacher,
        majority_class_miou=majority_class_miou,
        init_gap={
            metric: _mean_std([g[metric] for g in init_gaps])
            for metric in ('kl', 'cos')
        },
        methods=methods,
        paired=paired_differences(runs),
        pairing_check=pairing_check(runs),
        gradient_share_available=any(
            r.get('grad_norms') is not None for rs in runs.values()
            for r in rs),
        total_wall_s=total_s)


def _fmt(mean: Optional[float], std: Optional[float], digits: int,
         scale: float = 1.0) -> str:
    if mean is None:
        return '–'
    if std is None:
        return f'{scale * mean:.{digits}f}'
    return f'{scale * mean:.{digits}f} ± {scale * std:.{digits}f}'


def _fmt_interval(d: Optional[dict], digits: int, scale: float = 1.0) -> str:
    if d is None:
        return '–'
    if math.isnan(d['low']):
        return f'{scale * d["mean"]:+.{digits}f}'
    return (f'{scale * d["mean"]:+.{digits}f} [{scale * d["low"]:+.{digits}f}'
            f', {scale * d["high"]:+.{digits}f}]')


def markdown_table(summary: dict) -> str:
    """The results as markdown tables with notes."""
    teacher, methods = summary['teacher'], summary['methods']
    params, settings = summary['params'], summary['settings']
    dataset = summary['dataset']
    no_kd = methods.get('no_kd')
    lines = [
        '| model | val mIoU (%) | gap KL (×1e3) | gap cos (×1e2) | '
        'projected gap KL (×1e3) | projected gap cos (×1e2) | n | '
        'Δ mIoU vs no KD | GSKD grad share | step (ms) | '
        'GSKD loss fwd+bwd (ms / step) |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
        f'| teacher, DeepLabV3-R18 w16 ({params["teacher"] / 1e6:.2f} M) | '
        f'{teacher["miou"]:.2f} | 0 | 0 | | | 1 | | | '
        f'{teacher["iter_ms"]:.0f} | |',
    ]
    for key, m in methods.items():
        delta = ('' if no_kd is None or key == 'no_kd' else
                 f'{m["miou_mean"] - no_kd["miou_mean"]:+.2f}')
        gskd = f'{m["gskd_ms"]:.1f}' if m['gskd_ms'] > 0 else ''
        share = m.get('gskd_grad_share')
        share = '' if share is None else f'{share:.3g}'
        lines.append(
            f'| student {m["label"]} | '
            f'{_fmt(m["miou_mean"], m["miou_std"], 2)} | '
            f'{_fmt(m["gap_mean"], m["gap_std"], 2, 1e3)} | '
            f'{_fmt(m["gap_cos_mean"], m["gap_cos_std"], 2, 1e2)} | '
            f'{_fmt(m["gap_proj_mean"], m["gap_proj_std"], 2, 1e3)} | '
            f'{_fmt(m["gap_proj_cos_mean"], m["gap_proj_cos_std"], 2, 1e2)}'
            f' | {m["n"]} | {delta} | {share} | {m["iter_ms"]:.0f} | {gskd} |')
    init = summary['init_gap']
    lines.append(
        '| student before training | | '
        f'{_fmt(init["kl"]["mean"], init["kl"]["std"], 2, 1e3)} | '
        f'{_fmt(init["cos"]["mean"], init["cos"]["std"], 2, 1e2)} '
        '| | | | | | | |')
    lines.append(f'| teacher network untrained | '
                 f'{teacher["untrained_miou"]:.2f} | | | | | 1 | | | | |')
    lines.append(f'| majority class everywhere | '
                 f'{summary["majority_class_miou"]:.2f} | | | | | | | | | |')
    if summary['paired']:
        lines += [
            '',
            '| method − its base, same seeds | Δ val mIoU (%) [95 % CI] '
            '| Δ gap KL (×1e3) [95 % CI] | Δ gap cos (×1e2) [95 % CI] '
            '| Δ gap KL / base gap | n |',
            '|---|---|---|---|---|---|',
        ]
        for key, d in summary['paired'].items():
            method, base = methods[d.get('method', key)], methods[
                d['baseline']]
            rel = d['gap']['mean'] / base['gap_mean'] \
                if base['gap_mean'] else float('nan')
            lines.append(
                f'| {method["label"]} − {base["label"]} | '
                f'{_fmt_interval(d.get("miou"), 2)} | '
                f'{_fmt_interval(d.get("gap"), 2, 1e3)} | '
                f'{_fmt_interval(d.get("gap_cos"), 2, 1e2)} | '
                f'{100 * rel:+.0f} % | {d["miou"]["n"]} |')
    check = summary['pairing_check']
    collapsed = {
        m['label']: m['collapsed']
        for m in methods.values() if m['collapsed']
    }
    notes = [
        '',
        f'Synthetic Scenes, {dataset["num_train"]} train / '
        f'{dataset["num_val"]} val images of {dataset["img_size"]}x'
        f'{dataset["img_size"]}, {dataset["num_classes"]} classes; '
        f'features {dataset["img_size"] // 4}x{dataset["img_size"] // 4} '
        f'(output stride 4). Student DeepLabV3-R18 w8 '
        f'({params["student"] / 1e6:.2f} M parameters), '
        f'{settings["iters"]} iterations of batch {settings["batch_size"]} '
        f'per run; teacher {settings["teacher_iters"]} iterations of batch '
        f'{settings["teacher_batch_size"]}. mIoU and gaps: mean ± sample '
        'std over seeds. Structural gaps between the student\'s decode-head '
        'features and the teacher\'s on the val images, on the same fixed '
        'draws (8 labelled pixels per present class) for every method '
        '(gskd_demo.structural_gaps): gap KL is GSKD\'s descriptor KL '
        '(N 8, S -1, T 1, the authors\' length normalisation), gap cos the '
        'mean absolute difference of the two cosine self-similarity '
        'matrices; 0 means the same structure. "Projected": the student\'s '
        'features after the recipe\'s gskd_projector, where GSKD matches '
        'them (undefined, –, for recipes without one). GSKD grad share: '
        'the L2 norm of the GSKD term\'s gradient over the student over '
        'that of the task cross-entropy, on the first batch before '
        'training, mean over seeds'
        + ('' if summary.get('gradient_share_available', True) else
           ' (not measured: this gskd-mm has no '
           'gskd_mm.apis.loss_gradient_norms)') + '. '
        'Paired rows: mean difference over seeds with a Student t 95 % '
        'interval; every method of a seed starts from the same student '
        'weights and sees the same batches (checked: initial students '
        f'{"equal" if check["student"] else "DIFFER"}, first batches '
        f'{"equal" if check["data"] else "DIFFER"}). Runs at the '
        'majority-class mIoU (collapsed): '
        f'{collapsed if collapsed else "none"}. Step: median wall time of '
        f'a training iteration on {settings["torch_threads"]} CPU '
        'thread(s). GSKD loss fwd+bwd: median time per step inside '
        'GSKDLoss.',
        f'Total wall time: {summary["total_wall_s"]:.0f} s.',
    ]
    return '\n'.join(lines + notes) + '\n'


def resolution_note(summary: dict, study_seeds: int,
                    study_methods: int) -> str:
    """What a demo's seeds can and cannot resolve, and the full study.

    Args:
        summary (dict): The demo's summary (its paired differences).
        study_seeds (int): Seeds of the full study.
        study_methods (int): Methods of the full study.

    Returns:
        str: For every paired comparison, its mIoU interval and whether it
        excludes 0; the smallest difference these seeds resolve; how much
        the full study narrows it; the full study's command and its time
        at this run's pace.
    """
    seeds = summary['settings']['seeds']
    methods = summary['methods']
    lines, halves = [], []
    for key, d in summary['paired'].items():
        miou, gap = d.get('miou'), d.get('gap')
        if miou is None or math.isnan(miou['low']):
            continue
        half = (miou['high'] - miou['low']) / 2
        halves.append(half)
        key, base = d.get('method', key), methods[d['baseline']]
        gap_half = (gap['high'] - gap['low']) / 2 / base['gap_mean']
        resolved = miou['low'] > 0 or miou['high'] < 0
        lines.append(
            f'  {methods[key]["label"]} − {base["label"]}: mIoU '
            f'{_fmt_interval(miou, 2)}, '
            + ('resolved (the interval excludes 0)'
               if resolved else 'not resolved (the interval contains 0)')
            + f'; gap KL ±{100 * gap_half:.0f} % of the base\'s')
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
    runs = [r for m in methods.values() for r in m['runs']]
    workers = summary['settings']['workers']
    pace = float(np.mean([r['wall_s'] for r in runs])) / workers
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
