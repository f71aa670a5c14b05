# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo's student methods and their configs.

The methods: the student without distillation and with every recipe of
``projects/gskd_demo/configs`` (:data:`METHODS`), and the GSKD variants of
the sweep (:data:`GSKD_VARIANTS`), each named by a :class:`MethodKey`; and
a method's config rewritten for one run of the demo: its data, schedule and
seed (:func:`load_config`).
"""
import json
import os.path as osp
from dataclasses import dataclass, replace
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

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
    :func:`balancer_hook`) and ``fixed``, the variant it balances. Its
    moving average keeps less of the past
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
            balancer=dict(balancer, interval=5, momentum=0.7),
            fixed='gskd-row-t1'),
    }


GSKD_VARIANTS = gskd_variants()
# The METHODS key of the student without distillation.
NO_KD_NAME = 'no_kd'
# The base recipes a method can train from the teacher cache (the dense
# cache of the demo's flip-only pipeline: ``<method>_cached``): those of
# the teacher-cache study's plan.
CACHEABLE = ('dist', 'cwd')
# The suffix of a cached method's key.
CACHED_SUFFIX = '_cached'


@dataclass(frozen=True)
class MethodKey:
    """A student method of the demo or of its sweep, at a schedule.

    On disk and on the command line it is written
    ``<method>[@<iters>]`` or ``<base>_<variant>[@<iters>]``
    (:meth:`parse`, ``str``), e.g. ``'dist_gskd'``, ``'cwd_gskd-row'``,
    ``'no_kd@250'``; a method trained from the teacher cache ends in
    ``_cached`` (``'dist_cached'``, ``'dist_gskd-row-t1_cached'``);
    everywhere else it is this key.

    Attributes:
        base (str): A method of :data:`METHODS`; with a variant, the base
            recipe (of :data:`GSKD_PAIRS`) its GSKD recipe is built on.
        variant (str | None): A GSKD variant of :data:`GSKD_VARIANTS`.
        iters (int | None): Its own iterations (e.g. no KD trained for
            what a distillation run costs), else None: the demo's.
        cached (bool): Whether its teacher's targets come from the demo's
            teacher cache (:mod:`.teacher_cache`) instead of the teacher.
            Defaults to False.

    Raises:
        ValueError: If it names no method, ``iters`` is not positive, or
            a cached method's base is not in :data:`CACHEABLE`.
    """
    base: str
    variant: Optional[str] = None
    iters: Optional[int] = None
    cached: bool = False

    def __post_init__(self) -> None:
        known = self.base in METHODS if self.variant is None else (
            self.base in GSKD_PAIRS.values()
            and self.variant in GSKD_VARIANTS)
        if not known:
            raise ValueError(
                f'unknown demo method {self.name!r}: choose from '
                f'{list(METHODS)} or a sweep variant <base>_<variant> with '
                f'base in {list(GSKD_PAIRS.values())} and variant in '
                f'{list(GSKD_VARIANTS)}')
        if self.iters is not None and (not isinstance(self.iters, int)
                                       or self.iters < 1):
            raise ValueError(f'{self.name}@{self.iters}: the iterations '
                             'after @ must be a positive integer, e.g. '
                             'no_kd@250')
        if self.cached and self.base not in CACHEABLE:
            raise ValueError(
                f'{self.name}: only a method on {list(CACHEABLE)} trains '
                'from the teacher cache')

    @classmethod
    def parse(cls, text: str) -> 'MethodKey':
        """The key written ``text`` (see the class)."""
        name, at, iters = text.partition('@')
        if at and not iters.isdigit():
            raise ValueError(f'{text}: the iterations after @ must be a '
                             'positive integer, e.g. no_kd@250')
        iters = int(iters) if at else None
        cached = name.endswith(CACHED_SUFFIX)
        if cached:
            name = name[:-len(CACHED_SUFFIX)]
        if name in METHODS:
            return cls(name, None, iters, cached)
        base, sep, variant = name.partition('_')
        return cls(base, variant if sep else None, iters, cached)

    @classmethod
    def of(cls, key: Union['MethodKey', str]) -> 'MethodKey':
        """A key, or the key written ``key``."""
        return key if isinstance(key, cls) else cls.parse(key)

    @property
    def name(self) -> str:
        """The method without its schedule: ``<method>`` or
        ``<base>_<variant>``, ``_cached`` added for a cached method."""
        name = self.base if self.variant is None else \
            f'{self.base}_{self.variant}'
        return name + CACHED_SUFFIX if self.cached else name

    def __str__(self) -> str:
        return self.name if self.iters is None else \
            f'{self.name}@{self.iters}'

    @property
    def is_no_kd(self) -> bool:
        """Whether it is the student alone, at any schedule."""
        return self.base == NO_KD_NAME

    def at(self, iters: Optional[int]) -> 'MethodKey':
        """The same method at ``iters`` iterations (None: the demo's)."""
        return replace(self, iters=iters)

    @property
    def fixed_twin(self) -> Optional['MethodKey']:
        """A balanced variant's twin at its fixed weight, else None."""
        fixed = GSKD_VARIANTS.get(self.variant, {}).get('fixed')
        return None if fixed is None else replace(self, variant=fixed)

    @property
    def online(self) -> 'MethodKey':
        """The same method with the online teacher."""
        return replace(self, cached=False)


#: The student without distillation, at the demo's schedule.
NO_KD = MethodKey(NO_KD_NAME)
# What `make demo` runs: the student without KD, DIST, DIST from the
# teacher cache, DIST + the authors' GSKD and DIST + GSKD-row-t1 (the full
# study: :func:`study_methods`).
QUICK_METHODS = (NO_KD, MethodKey('dist'), MethodKey('dist', cached=True),
                 MethodKey('dist_gskd'), MethodKey('dist', 'gskd-row-t1'))


class MethodSpec(NamedTuple):
    """A student method of the demo or of its sweep.

    Attributes:
        label (str): Name in tables and figures.
        config (str): Config file in :func:`config_dir`.
        loss_gskd (dict | None): Overrides of the config's ``loss_gskd``
            (a sweep variant), else None.
        baseline (MethodKey | None): The method it is compared with, paired
            by seed (a GSKD recipe's base recipe), else None.
        balancer (dict | None): Arguments of the
            ``GradientShareBalancerHook`` of a balanced variant (its
            ``warmup_iters`` come from the run's schedule), else None.
        iters (int | None): Its own iterations (the key's), else None: the
            demo's.
        cached (bool): Whether it trains from the teacher cache. Defaults
            to False.
    """
    label: str
    config: str
    loss_gskd: Optional[dict]
    baseline: Optional[MethodKey]
    balancer: Optional[dict] = None
    iters: Optional[int] = None
    cached: bool = False


def method_spec(key: Union[MethodKey, str]) -> MethodSpec:
    """The method of a key.

    Args:
        key (MethodKey | str): The method's key, or the key written (see
            :class:`MethodKey`).

    Returns:
        MethodSpec: Its label, config, overrides and baseline.

    Raises:
        ValueError: If a written key names no method.
    """
    key = MethodKey.of(key)
    if key.iters is not None:
        spec = method_spec(key.at(None))
        return spec._replace(
            label=f'{spec.label}, {key.iters} it', iters=key.iters)
    if key.cached:
        # Compared with the same method's online teacher, paired by seed.
        spec = method_spec(key.online)
        return spec._replace(
            label=f'{spec.label} cached', baseline=key.online, cached=True)
    if key.variant is None:
        label, config = METHODS[key.base]
        baseline = GSKD_PAIRS.get(key.base)
        return MethodSpec(label, config, None,
                          None if baseline is None else MethodKey(baseline))
    recipes = {b: g for g, b in GSKD_PAIRS.items()}
    variant = GSKD_VARIANTS[key.variant]
    return MethodSpec(f'{METHODS[key.base][0]} + {variant["label"]}',
                      METHODS[recipes[key.base]][1], variant['loss_gskd'],
                      MethodKey(key.base), variant.get('balancer'))


def sweep_methods(bases: Sequence[str] = ('dist', 'cwd', 'cirkd'),
                  variants: Optional[Sequence[str]] = None
                  ) -> List[MethodKey]:
    """The methods of the sweep: per base, the base recipe, it with the
    authors' GSKD, and it with every GSKD variant.

    Args:
        bases (Sequence[str]): Base recipes. Defaults to DIST, CWD, CIRKD.
        variants (Sequence[str], optional): Keys of
            :data:`GSKD_VARIANTS`. Defaults to all.

    Returns:
        list[MethodKey]: The methods.

    Raises:
        ValueError: For a base or a variant that is not one.
    """
    recipes = {b: g for g, b in GSKD_PAIRS.items()}
    variants = list(GSKD_VARIANTS) if variants is None else list(variants)
    keys = []
    for base in bases:
        keys += [MethodKey(base), MethodKey(recipes[base])]
        keys += [MethodKey(base, v) for v in variants]
    return keys


def study_methods() -> List[MethodKey]:
    """The methods of the full study (``demo.py --study``): every method
    of :data:`METHODS` and, per base recipe, every GSKD variant."""
    keys = [MethodKey(name) for name in METHODS]
    keys += [k for k in sweep_methods() if k not in keys]
    return keys


# The methods of the compute-matched study (``demo.py --compute``), those
# of the teacher-cache study's plan: no KD, DIST and CWD each online and
# from the teacher cache, and DIST + GSKD-row-t1 from the cache.
COMPUTE_METHODS = (NO_KD, MethodKey('dist'), MethodKey('dist', cached=True),
                   MethodKey('cwd'), MethodKey('cwd', cached=True),
                   MethodKey('dist', 'gskd-row-t1', cached=True))
# The methods of the earlier compute-matched study (before the teacher
# cache): no KD, every base, the authors' GSKD and GSKD-row-t1 on DIST,
# and the balanced GSKD-row-t1 on every base.
PREVIOUS_COMPUTE_METHODS = (NO_KD, MethodKey('dist'), MethodKey('cwd'),
                            MethodKey('cirkd'), MethodKey('dist_gskd'),
                            MethodKey('dist', 'gskd-row-t1'),
                            MethodKey('dist', 'gskd-row-t1-bal'),
                            MethodKey('cwd', 'gskd-row-t1-bal'),
                            MethodKey('cirkd', 'gskd-row-t1-bal'))
# What a step of each method costs, over a step of the student alone:
# measured once on this machine (``demo.py --measure-costs``) and fixed
# before the compute-matched runs.
COSTS_FILE = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'step_costs.json')


def read_costs(path: str = COSTS_FILE,
               field: str = 'ratio') -> Dict[MethodKey, float]:
    """The cost ratio of every measured method.

    Args:
        path (str): The costs file. Defaults to :data:`COSTS_FILE`.
        field (str): What to read: ``'ratio'`` (the step cost) or
            ``'pass_iters'`` (a cached method's one-off cache pass in no-KD
            iterations: the pass's CPU time over the mean no-KD iteration).
            Defaults to 'ratio'.

    Returns:
        dict[MethodKey, float]: By method that has it, its step over the
        student's alone (or its cache pass).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path} does not exist: measure the step costs first '
            '(python projects/gskd_demo/demo.py --measure-costs)')
    with open(path) as f:
        return {
            MethodKey.parse(k): v[field]
            for k, v in json.load(f)['methods'].items() if field in v
        }


def demo_matched_iters(iters: int, ratio: float,
                       pass_iters: float = 0.0) -> int:
    """The iterations of the student alone that ``iters`` iterations of a
    method of cost ``ratio`` buy (the library's rounding, to 10), with a
    one-off cost of ``pass_iters`` no-KD iterations (a cache pass)
    amortised over the run: ``iters x ratio + pass_iters``."""
    return matched_iters(iters, ratio + pass_iters / iters)


def matched_methods(methods: Sequence[MethodKey],
                    iters: int,
                    costs: Dict[MethodKey, float],
                    pass_costs: Optional[Dict[MethodKey, float]] = None
                    ) -> List[MethodKey]:
    """The student alone at the budget of each distillation method: a
    cached method's two ways, with its cache pass amortised over the run
    and without it (the cache reused).

    Args:
        methods (Sequence[MethodKey]): The methods (no KD among them, or
            not).
        iters (int): The schedule the methods run.
        costs (dict[MethodKey, float]): Cost ratios (:func:`read_costs`).
        pass_costs (dict[MethodKey, float], optional): Cached methods'
            cache passes in no-KD iterations (``read_costs(field=
            'pass_iters')``).

    Returns:
        list[MethodKey]: No KD at its own iterations, one per distinct
        budget, in the order of ``methods``.

    Raises:
        KeyError: If a distillation method's cost (or a cached method's
            pass) was not measured.
    """
    keys = []
    for key in methods:
        if key.is_no_kd:
            continue
        if key.cached and key not in (pass_costs or {}):
            raise KeyError(f'the cache pass of {str(key)!r} was not '
                           'measured: add it with python '
                           'projects/gskd_demo/demo.py --measure-costs')
        budgets = matched_budgets(key, iters, costs, pass_costs)
        for matched in map(NO_KD.at, budgets.values()):
            if matched not in keys:
                keys.append(matched)
    return keys


def matched_budgets(key: MethodKey,
                    iters: int,
                    costs: Dict[MethodKey, float],
                    pass_costs: Optional[Dict[MethodKey, float]] = None
                    ) -> Dict[str, int]:
    """The no-KD iterations a distillation method's run buys.

    Args:
        key (MethodKey): The method.
        iters (int): Its schedule.
        costs (dict[MethodKey, float]): Cost ratios.
        pass_costs (dict[MethodKey, float], optional): Cache passes in
            no-KD iterations.

    Returns:
        dict[str, int]: ``'compute'``: ``iters`` x its step cost (a cached
        method's with the cache reused), rounded to 10; for a method in
        ``pass_costs`` also ``'compute_amortised'``: its cache pass added.
        (The values of :class:`.results.ComparisonKind`.)

    Raises:
        KeyError: If its step cost was not measured.
    """
    if key not in costs:
        raise KeyError(
            f'the step cost of {str(key)!r} was not measured: add it with '
            'python projects/gskd_demo/demo.py --measure-costs')
    budgets = dict(compute=demo_matched_iters(iters, costs[key]))
    if key in (pass_costs or {}):
        budgets['compute_amortised'] = demo_matched_iters(
            iters, costs[key], pass_costs[key])
    return budgets


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
