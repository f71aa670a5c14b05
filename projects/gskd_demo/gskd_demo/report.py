# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo's summary and table: means over seeds, paired differences."""
import math
import os.path as osp
from typing import Dict, List, Optional

import numpy as np

from .stats import paired_t_interval
from .runs import GSKD_PAIRS, METHODS


def _mean_std(values: List[float]) -> Dict[str, Optional[float]]:
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


def paired_differences(runs: Dict[str, list],
                       confidence: float = 0.95) -> Dict[str, dict]:
    """Each GSKD recipe minus its base recipe, paired by seed.

    Args:
        runs (dict[str, list]): Per method, the run results (``seed``,
            ``miou``, ``gap``).
        confidence (float): Coverage of the t intervals. Defaults to 0.95.

    Returns:
        dict[str, dict]: Per GSKD recipe present with its base: ``baseline``
        and, for ``miou`` and ``gap``, ``mean``, ``low``, ``high``, ``n``.
    """
    out = {}
    for gskd, base in GSKD_PAIRS.items():
        if gskd not in runs or base not in runs:
            continue
        a = {r['seed']: r for r in runs[gskd]}
        b = {r['seed']: r for r in runs[base]}
        seeds = sorted(set(a) & set(b))
        out[gskd] = dict(baseline=base)
        for metric in ('miou', 'gap'):
            interval = paired_t_interval([a[s][metric] for s in seeds],
                                         [b[s][metric] for s in seeds],
                                         confidence)
            out[gskd][metric] = interval._asdict()
    return out


def summarise(settings: dict, dataset: dict, teacher: dict, runs: Dict[str,
                                                                       list],
              init_gaps: List[float], majority_class_miou: float,
              params: Dict[str, int], total_s: float) -> dict:
    """Collect everything of the table into one JSON-able dict."""
    methods = {}
    for key, method_runs in runs.items():
        miou = _mean_std([r['miou'] for r in method_runs])
        gap = _mean_std([r['gap'] for r in method_runs])
        methods[key] = dict(
            label=METHODS[key][0],
            config=osp.join('configs', 'demo', METHODS[key][1]),
            n=len(method_runs),
            miou_mean=miou['mean'],
            miou_std=miou['std'],
            gap_mean=gap['mean'],
            gap_std=gap['std'],
            wall_s_mean=float(np.mean([r['wall_s'] for r in method_runs])),
            iter_ms=float(np.median([r['iter_ms'] for r in method_runs])),
            gskd_ms=float(np.median([r['gskd_ms'] for r in method_runs])),
            runs=method_runs)
    return dict(
        dataset=dataset,
        settings=settings,
        params=params,
        teacher=teacher,
        majority_class_miou=majority_class_miou,
        init_gap=_mean_std(init_gaps),
        methods=methods,
        paired=paired_differences(runs),
        pairing_check=pairing_check(runs),
        total_wall_s=total_s)


def _fmt(mean: float, std: Optional[float], digits: int) -> str:
    if std is None:
        return f'{mean:.{digits}f}'
    return f'{mean:.{digits}f} ± {std:.{digits}f}'


def _fmt_interval(d: dict, digits: int) -> str:
    if math.isnan(d['low']):
        return f'{d["mean"]:+.{digits}f}'
    return (f'{d["mean"]:+.{digits}f} [{d["low"]:+.{digits}f}, '
            f'{d["high"]:+.{digits}f}]')


def markdown_table(summary: dict) -> str:
    """The results as markdown tables with notes."""
    teacher, methods = summary['teacher'], summary['methods']
    params, settings = summary['params'], summary['settings']
    dataset = summary['dataset']
    no_kd = methods.get('no_kd')
    lines = [
        '| model | val mIoU (%) | structural gap (×1e3) | n | Δ mIoU vs no '
        'KD | step (ms) | GSKD loss fwd+bwd (ms / step) |',
        '|---|---|---|---|---|---|---|',
        f'| teacher, DeepLabV3-R18 w16 ({params["teacher"] / 1e6:.2f} M) | '
        f'{teacher["miou"]:.2f} | 0 | 1 | | {teacher["iter_ms"]:.0f} | |',
    ]
    for key, m in methods.items():
        delta = ('' if no_kd is None or key == 'no_kd' else
                 f'{m["miou_mean"] - no_kd["miou_mean"]:+.2f}')
        gskd = f'{m["gskd_ms"]:.1f}' if m['gskd_ms'] > 0 else ''
        gap_std = None if m['gap_std'] is None else 1e3 * m['gap_std']
        lines.append(f'| student {m["label"]} | '
                     f'{_fmt(m["miou_mean"], m["miou_std"], 2)} | '
                     f'{_fmt(1e3 * m["gap_mean"], gap_std, 2)} | {m["n"]} | '
                     f'{delta} | {m["iter_ms"]:.0f} | {gskd} |')
    init = summary['init_gap']
    init_std = None if init['std'] is None else 1e3 * init['std']
    lines.append('| student before training | | '
                 f'{_fmt(1e3 * init["mean"], init_std, 2)} | | | | |')
    lines.append(f'| teacher network untrained | '
                 f'{teacher["untrained_miou"]:.2f} | | 1 | | | |')
    lines.append(f'| majority class everywhere | '
                 f'{summary["majority_class_miou"]:.2f} | | | | | |')
    if summary['paired']:
        lines += [
            '',
            '| GSKD recipe − its base, same seeds | Δ val mIoU (%) [95 % CI] '
            '| Δ structural gap (×1e3) [95 % CI] | n |',
            '|---|---|---|---|',
        ]
        for gskd, d in summary['paired'].items():
            gap = {
                k: (1e3 * v if k != 'n' else v)
                for k, v in d['gap'].items()
            }
            lines.append(f'| {methods[gskd]["label"]} − '
                         f'{methods[d["baseline"]]["label"]} | '
                         f'{_fmt_interval(d["miou"], 2)} | '
                         f'{_fmt_interval(gap, 2)} | {d["miou"]["n"]} |')
    check = summary['pairing_check']
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
        f'{settings["teacher_batch_size"]}. mIoU and '
        'structural gap: mean ± sample std over seeds. Structural gap: '
        'GSKD\'s descriptor KL (N 8, S -1, T 1, labelled pixels, fixed '
        'draws) between the student\'s own decode-head features and the '
        'teacher\'s on the val images (gskd_demo.structural_gap); 0 '
        'means the same structure. Paired rows: mean difference over seeds '
        'with a Student t 95 % interval; every method of a seed starts '
        'from the same student weights and sees the same batches (checked: '
        f'initial students {"equal" if check["student"] else "DIFFER"}, '
        f'first batches {"equal" if check["data"] else "DIFFER"}). Step: '
        'median wall time of a training iteration on '
        f'{settings["torch_threads"]} CPU thread(s). GSKD loss fwd+bwd: '
        'median time per step inside GSKDLoss.',
        f'Total wall time: {summary["total_wall_s"]:.0f} s.',
    ]
    return '\n'.join(lines + notes) + '\n'
