# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo's student methods and their configs.

The methods: the student without distillation and with every recipe of
``projects/gskd_demo/configs`` (:data:`METHODS`), and the GSKD variants of
the sweep (:data:`GSKD_VARIANTS`); and a method's config rewritten for one
run of the demo: its data, schedule and seed (:func:`load_config`).
"""
import json
import os.path as osp
from typing import Dict, List, NamedTuple, Optional, Sequence

from mmengine.config import Config, ConfigDict

from gskd_mm.analysis.budget import scale_schedulers
from gskd_mm.analysis.step_cost import matched_iters

TEACHER_CONFIG = 'deeplabv3_r18-w16-d4_synthetic-64x64.py'
STUDENT_CONFIG = 'deeplabv3_r18-w8-d4_synthetic-64x64.py'
PAIR = 'deeplabv3_r18-w16-d4_deeplabv3_r18-w8-d4_synthetic-64x64.py'
# key: (label, config); the first is the student without distillation.
METHODS = {
    'no_kd': ('no KD', STUDENT_CONFIG),
    'dist': ('DIST', f'dist_{PAIR}'),
    'dist_gskd': ('DIST + GSKD', f'dist-gskd_{PAIR}'),
    'cwd': ('CWD', f'cwd_{PAIR}'),
    'cwd_gskd': ('CWD + GSKD', f'cwd-gskd_{PAIR}'),
    'cirkd': ('CIRKD', f'cirkd_{PAIR}'),
    'cirkd_gskd': ('CIRKD + GSKD', f'cirkd-gskd_{PAIR}'),
}
# Each GSKD recipe and the recipe it adds GSKD to.
GSKD_PAIRS = {'dist_gskd': 'dist', 'cwd_gskd': 'cwd', 'cirkd_gskd': 'cirkd'}
# Our GSKD variants, defined once for the recipes and the demo.
VARIANTS_FILE = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))),
    'configs', 'gskd', '_base_', 'gskd_variants.py')


def gskd_variants() -> Dict[str, dict]:
    """The GSKD variants of the sweep (``demo.py --sweep``).

    Each is ``label``, ``loss_gskd`` (overrides of the GSKD recipe's
    ``loss_gskd``: its options and weight, from
    ``configs/gskd/_base_/gskd_variants.py``, where they are set from a
    target and not tuned on results) and, for the balanced variant,
    ``balancer``: the ``GradientShareBalancerHook`` of the recipes
    (target share 1.0), measuring every 5 of the demo's 150 iterations,
    its weight ramped up over the schedule's learning-rate warm-up (see
    :func:`balancer_hook`). Its moving average keeps less of the past
    (momentum 0.7) than the hook's default (0.9, about 10 updates, for
    schedules of thousands of iterations): in one trial run per base (seed
    0) GSKD's share at weight 1 fell about 2.5x over the demo's 30 updates,
    and at 0.9 the weight lagged it by ~45 iterations.

    Returns:
        dict[str, dict]: By variant key.
    """
    cfg = Config.fromfile(VARIANTS_FILE)
    balancer = {k: v for k, v in cfg.gskd_balancer.items()
                if k not in ('type', 'warmup_iters')}
    return {
        'gskd-desc': dict(label='GSKD-desc', loss_gskd=dict(cfg.gskd_desc)),
        'gskd-row': dict(label='GSKD-row', loss_gskd=dict(cfg.gskd_row)),
        'gskd-row-t1':
        dict(label='GSKD-row-t1', loss_gskd=dict(cfg.gskd_row_t1)),
        'gskd-row-t1-bal':
        dict(
            label='GSKD-row-t1 balanced',
            loss_gskd=dict(cfg.gskd_row_t1),
            balancer=dict(balancer, interval=5, momentum=0.7)),
    }


GSKD_VARIANTS = gskd_variants()
# What `make demo` runs: the student without KD, DIST, DIST + the authors'
# GSKD and DIST + GSKD-row-t1 (the full study: :func:`study_methods`).
QUICK_METHODS = ('no_kd', 'dist', 'dist_gskd', 'dist_gskd-row-t1')


class MethodSpec(NamedTuple):
    """A student method of the demo or of its sweep.

    Attributes:
        label (str): Name in tables and figures.
        config (str): Config file in :func:`config_dir`.
        loss_gskd (dict | None): Overrides of the config's ``loss_gskd``
            (a sweep variant), else None.
        baseline (str | None): The method it is compared with, paired by
            seed (a GSKD recipe's base recipe), else None.
        balancer (dict | None): Arguments of the
            ``GradientShareBalancerHook`` of a balanced variant (its
            ``warmup_iters`` come from the run's schedule), else None.
        iters (int | None): Its own iterations (a key ``<method>@<iters>``,
            e.g. no KD trained for what a distillation run costs), else
            None: the demo's.
    """
    label: str
    config: str
    loss_gskd: Optional[dict]
    baseline: Optional[str]
    balancer: Optional[dict] = None
    iters: Optional[int] = None


def method_spec(key: str) -> MethodSpec:
    """The method of a key: one of :data:`METHODS`, or a sweep variant
    ``<base>_<variant>`` (a base of :data:`GSKD_PAIRS`, a variant of
    :data:`GSKD_VARIANTS`), either with ``@<iters>`` for a schedule of its
    own (e.g. ``no_kd@250``).

    Args:
        key (str): The method's key, e.g. ``'dist_gskd'``,
            ``'cwd_gskd-row'``, ``'no_kd@250'``.

    Returns:
        MethodSpec: Its label, config, overrides and baseline.

    Raises:
        ValueError: If the key names no method.
    """
    key, at, iters = key.partition('@')
    if at:
        if not iters.isdigit() or int(iters) < 1:
            raise ValueError(f'{key}@{iters}: the iterations after @ must '
                             'be a positive integer, e.g. no_kd@250')
        spec = method_spec(key)
        return spec._replace(
            label=f'{spec.label}, {iters} it', iters=int(iters))
    if key in METHODS:
        label, config = METHODS[key]
        return MethodSpec(label, config, None, GSKD_PAIRS.get(key))
    base, _, variant = key.partition('_')
    recipes = {b: g for g, b in GSKD_PAIRS.items()}
    if base in recipes and variant in GSKD_VARIANTS:
        spec = GSKD_VARIANTS[variant]
        return MethodSpec(f'{METHODS[base][0]} + {spec["label"]}',
                          METHODS[recipes[base]][1], spec['loss_gskd'], base,
                          spec.get('balancer'))
    raise ValueError(
        f'unknown demo method {key!r}: choose from {list(METHODS)} or a '
        f'sweep variant <base>_<variant> with base in '
        f'{list(GSKD_PAIRS.values())} and variant in {list(GSKD_VARIANTS)}')


def sweep_methods(bases: Sequence[str] = ('dist', 'cwd', 'cirkd'),
                  variants: Optional[Sequence[str]] = None) -> List[str]:
    """The methods of the sweep: per base, the base recipe, it with the
    authors' GSKD, and it with every GSKD variant.

    Args:
        bases (Sequence[str]): Base recipes. Defaults to DIST, CWD, CIRKD.
        variants (Sequence[str], optional): Keys of
            :data:`GSKD_VARIANTS`. Defaults to all.

    Returns:
        list[str]: Method keys (see :func:`method_spec`).
    """
    recipes = {b: g for g, b in GSKD_PAIRS.items()}
    variants = list(GSKD_VARIANTS) if variants is None else list(variants)
    keys = []
    for base in bases:
        keys += [base, recipes[base]] + [f'{base}_{v}' for v in variants]
    for key in keys:
        method_spec(key)  # a clear error for a bad base or variant
    return keys


def study_methods() -> List[str]:
    """The methods of the full study (``demo.py --study``): every method
    of :data:`METHODS` and, per base recipe, every GSKD variant."""
    keys = list(METHODS)
    keys += [k for k in sweep_methods() if k not in keys]
    return keys


# The methods of the compute-matched study (``demo.py --compute``): no
# KD, every base, the authors' GSKD and GSKD-row-t1 on DIST, and the
# balanced GSKD-row-t1 on every base.
COMPUTE_METHODS = ('no_kd', 'dist', 'cwd', 'cirkd', 'dist_gskd',
                   'dist_gskd-row-t1', 'dist_gskd-row-t1-bal',
                   'cwd_gskd-row-t1-bal', 'cirkd_gskd-row-t1-bal')
# What a step of each method costs, over a step of the student alone:
# measured once on this machine (``demo.py --measure-costs``) and fixed
# before the compute-matched runs.
COSTS_FILE = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'step_costs.json')


def read_costs(path: str = COSTS_FILE) -> Dict[str, float]:
    """The cost ratio of every measured method.

    Args:
        path (str): The costs file. Defaults to :data:`COSTS_FILE`.

    Returns:
        dict[str, float]: By method key, its step over the student's alone.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path} does not exist: measure the step costs first '
            '(python projects/gskd_demo/demo.py --measure-costs)')
    with open(path) as f:
        return {k: v['ratio'] for k, v in json.load(f)['methods'].items()}


def is_no_kd(key: str) -> bool:
    """Whether a method key is the student alone, at the demo's schedule
    or at one of its own (``no_kd@<iters>``)."""
    return key.partition('@')[0] == 'no_kd'


def demo_matched_iters(iters: int, ratio: float) -> int:
    """The iterations of the student alone that ``iters`` iterations of a
    method of cost ``ratio`` buy (the library's rounding, to 10)."""
    return matched_iters(iters, ratio)


def matched_methods(methods: Sequence[str], iters: int,
                    costs: Dict[str, float]) -> List[str]:
    """The student alone at the budget of each distillation method.

    Args:
        methods (Sequence[str]): Method keys (no KD among them, or not).
        iters (int): The schedule the methods run.
        costs (dict[str, float]): Cost ratios (:func:`read_costs`).

    Returns:
        list[str]: ``no_kd@<iters>`` keys, one per distinct budget, in the
        order of ``methods``.

    Raises:
        KeyError: If a distillation method's cost was not measured.
    """
    keys = []
    for key in methods:
        if is_no_kd(key):
            continue
        if key not in costs:
            raise KeyError(
                f'the step cost of {key!r} was not measured: add it with '
                'python projects/gskd_demo/demo.py --measure-costs')
        matched = f'no_kd@{demo_matched_iters(iters, costs[key])}'
        if matched not in keys:
            keys.append(matched)
    return keys


def balancer_hook(spec: MethodSpec, cfg: Config) -> Optional[dict]:
    """The ``GradientShareBalancerHook`` config of a balanced method.

    Its weight ramps up over the run's learning-rate warm-up (the first
    scheduler, a ``LinearLR`` ending where the decay starts), so the ramp
    keeps its share of the run at any ``--iters``.

    Args:
        spec (MethodSpec): The method.
        cfg (Config): Its config for the run (see :func:`load_config`).

    Returns:
        dict | None: The hook's config, or None for a method without one.
    """
    if spec.balancer is None:
        return None
    warmup = next(s for s in cfg.param_scheduler if s.type == 'LinearLR')
    return dict(
        type='GradientShareBalancerHook',
        warmup_iters=warmup.end,
        **spec.balancer)


def config_dir() -> str:
    """The demo's configs, ``projects/gskd_demo/configs``."""
    return osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                    'configs')


def load_config(name: str, data_root: str, generate_cfg: dict, iters: int,
                batch_size: int, seed: int) -> Config:
    """A demo config with the demo's data, schedule and seed.

    Args:
        name (str): Config file in ``projects/gskd_demo/configs``.
        data_root (str): Dataset directory.
        generate_cfg (dict): Generation parameters of the dataset.
        iters (int): Training iterations (validation and the checkpoint
            come at the end).
        batch_size (int): Training batch size.
        seed (int): Seed of the run.

    Returns:
        Config: The config (without work_dir).
    """
    cfg = Config.fromfile(osp.join(config_dir(), name))
    # Its text unformatted: MMEngine writes a config's text 3 times per run
    # (log, dump, checkpoint), and yapf's formatting took ~1.3 s each time.
    # (MMEngine 0.10's fromfile drops `format_python_code` for such configs.)
    cfg = Config(
        cfg.to_dict(),
        cfg_text=cfg.text,
        filename=cfg.filename,
        format_python_code=False)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
        cfg[loader].dataset.generate_cfg = generate_cfg
    cfg.train_dataloader.batch_size = batch_size
    # The schedulers keep their shape: every begin and end scales with the
    # run's length (a warm-up over the first 10 % stays 10 %).
    cfg.param_scheduler = [
        ConfigDict(scheduler) for scheduler in scale_schedulers(
            cfg.param_scheduler, iters / cfg.train_cfg.max_iters)
    ]
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.interval = max(1, iters // 50)
    cfg.randomness = dict(seed=seed)
    return cfg


def student_model_cfg(cfg: Config):
    """The student's model dict of a demo config (distiller or not)."""
    return cfg.model.architecture if 'architecture' in cfg.model else cfg.model
