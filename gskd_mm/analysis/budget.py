# Copyright (c) gskd-mm contributors. All rights reserved.
"""What a distillation recipe costs against its student trained alone, and
the student-only baseline of equal compute: the library of
``tools/analysis_tools/kd_budget.py``.

Every comparison in the distillation papers, and in the recipes here, is at
equal iterations, but a distillation step also runs the teacher. Two
measures of the extra cost:

- **FLOPs** (hardware-independent, deterministic): the forward FLOPs of
  teacher and student, counted by ``mmengine.analysis.FlopAnalyzer`` (one
  multiply-add is one FLOP) on the networks as training runs them (see
  :func:`recipe_flops`). With a backward pass costing about two forwards, a
  distillation step costs about ``F_t + 3 F_s`` against ``3 F_s`` for the
  student alone: the step ratio is estimated as ``1 + F_t / (3 F_s)``. An
  estimate: FLOPs leave out the distillation losses (GSKD's similarity
  maps, CIRKD's memory contrasts, CWD's discriminator and its step), the
  connectors, the optimizer and the data loading, and FLOPs are not time.
- **Step cost** (this hardware): the library's one definition
  (:mod:`~gskd_mm.analysis.step_cost`), whole training iterations of the
  recipe over its student's alone, in CPU time on one thread, interleaved
  repeats, with a 95 % interval
  (:func:`~gskd_mm.analysis.step_benchmark.recipe_step_cost`); it includes
  all of the above.

The student-only iterations a recipe's compute buys are its iterations
times one of these ratios (:meth:`KDBudget.student_iters`), and
:func:`student_only_config` writes the config that trains that baseline.
"""
import copy
import inspect
import json
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config, ConfigDict
from mmengine.registry import HOOKS, DefaultScope
from mmengine.runner import Runner
from mmrazor.registry import MODELS
from torch import nn

from ..models.algorithms import EvalTeacherDistill
from .offline import offline_recipe, recipe_crop
from .step_benchmark import build_model
from .step_cost import StepCost, matched_iters

__all__ = [
    'BUDGET_BASES', 'KDBudget', 'RecipeFlops', 'SegmentorForward',
    'budget_table', 'matched_iters', 'recipe_flops', 'segmentor_flops',
    'student_only_config'
]

#: What buys the student-only iterations: the measured step-time ratio, the
#: FLOP estimate of it, or nothing (ratio 1: the papers' equal iterations).
BUDGET_BASES = ('time', 'flops', 'iters')
#: A recipe's student-only iterations are rounded to a multiple of this
#: (schedules of tens of thousands of iterations; the demo's, of hundreds,
#: use :data:`~gskd_mm.analysis.step_cost.MATCHED_MULTIPLE`).
ITERS_MULTIPLE = 100
#: Images per traced forward: two, so that BN in train mode (the student's)
#: has two values per channel in pooled branches (ASPP's image pool).
FLOP_BATCH = 2
#: What a student-only config keeps of a recipe besides the keys MMEngine's
#: Runner reads: the pipelines MMSeg's inference API and test-time
#: augmentation read (``test_pipeline``, ``tta_*``), ``train_pipeline`` for
#: tools that browse the data, and the recipe's ``custom_imports``.
EXTRA_KEYS = ('custom_imports', 'train_pipeline', 'test_pipeline', 'tta_model',
              'tta_pipeline')


class SegmentorForward(nn.Module):
    """A segmentor's forward as distillation training runs it, to trace.

    The features (``extract_feat``: backbone and neck), the decode head and,
    with ``auxiliary``, every auxiliary head on the same features: what
    MMSeg's ``loss`` computes before its losses, and what
    ``EvalTeacherDistill`` runs of the teacher (``tensor`` mode, plus the
    auxiliary heads with ``teacher_auxiliary=True``).

    Args:
        segmentor (nn.Module): An MMSeg ``EncoderDecoder``.
        auxiliary (bool): Run the auxiliary heads too.
    """

    def __init__(self, segmentor: nn.Module, auxiliary: bool) -> None:
        super().__init__()
        self.segmentor = segmentor
        self.auxiliary = auxiliary

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        feats = self.segmentor.extract_feat(inputs)
        outputs = [self.segmentor.decode_head(feats)]
        heads = getattr(self.segmentor, 'auxiliary_head', None)
        if self.auxiliary and heads is not None:
            for head in heads if isinstance(heads, nn.ModuleList) else [heads]:
                outputs.append(head(feats))
        return tuple(outputs)


def segmentor_flops(segmentor: nn.Module, crop: Tuple[int, int],
                    auxiliary: bool) -> float:
    """Forward FLOPs per image of a segmentor, in its current mode.

    Counted by ``mmengine.analysis.FlopAnalyzer`` (one multiply-add is one
    FLOP; element-wise operations such as activations and additions count
    nothing) on :class:`SegmentorForward`, over a batch of
    ``FLOP_BATCH`` zero images, under ``no_grad``.

    Args:
        segmentor (nn.Module): An MMSeg segmentor (train or eval mode: BN
            counts differently in each, as FlopAnalyzer's handles do).
        crop (tuple[int, int]): (h, w) input size.
        auxiliary (bool): Count the auxiliary heads too.

    Returns:
        float: FLOPs per image.
    """
    inputs = torch.zeros(FLOP_BATCH, 3, *crop)
    analyzer = FlopAnalyzer(SegmentorForward(segmentor, auxiliary), inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        return analyzer.total() / FLOP_BATCH


@dataclass
class RecipeFlops:
    """Forward FLOPs per image of a recipe's teacher and student.

    Attributes:
        teacher (float): The teacher's forward as the algorithm runs it.
        student (float): The student's training forward (decode and
            auxiliary heads, without their losses).
        crop (tuple[int, int]): The (h, w) input they were counted at.
    """
    teacher: float
    student: float
    crop: Tuple[int, int]

    @property
    def ratio(self) -> float:
        """``F_t / F_s``."""
        return self.teacher / self.student

    @property
    def step_ratio(self) -> float:
        """The estimated cost of a distillation step in student steps,
        ``1 + F_t / (3 F_s)`` (a backward pass about two forwards)."""
        return 1 + self.ratio / 3


def teacher_runs_auxiliary(cfg: Config) -> bool:
    """Whether a recipe's algorithm runs its teacher's auxiliary heads.

    ``EvalTeacherDistill`` (and its subclasses) runs them only with
    ``teacher_auxiliary=True``; MMRazor's ``SingleTeacherDistill`` runs the
    teacher in ``loss`` mode, auxiliary heads included.

    Args:
        cfg (Config): A distillation recipe.

    Returns:
        bool: Whether they run.
    """
    with DefaultScope.overwrite_default_scope(
            cfg.model.get('_scope_') or cfg.get('default_scope')):
        algorithm = MODELS.get(cfg.model.type)
    if algorithm is None:
        raise KeyError(f'model type {cfg.model.type!r} is not registered: '
                       'import its module first (the recipe\'s '
                       'custom_imports)')
    if issubclass(algorithm, EvalTeacherDistill):
        return bool(cfg.model.get('teacher_auxiliary', False))
    return True


def recipe_flops(cfg: Config,
                 crop: Optional[Tuple[int, int]] = None,
                 cache: Optional[Dict[str, float]] = None) -> RecipeFlops:
    """Forward FLOPs per image of a recipe's teacher and student.

    The recipe is built offline (:func:`~gskd_mm.analysis.offline_recipe`,
    with BN for SyncBN, which has the same FLOPs) on the CPU. The teacher is
    counted in eval mode as the algorithm runs it (decode head; auxiliary
    heads too where :func:`teacher_runs_auxiliary`), the student in train
    mode with its decode and auxiliary heads.

    Args:
        cfg (Config): A distillation recipe (not changed).
        crop (tuple[int, int], optional): (h, w) input; defaults to the
            recipe's crop (:func:`~gskd_mm.analysis.recipe_crop`).
        cache (dict, optional): FLOPs by network config, mode, heads and
            crop, filled and reused across calls (recipes share networks).

    Returns:
        RecipeFlops: The two counts.
    """
    crop = tuple(crop or recipe_crop(cfg))
    cfg = offline_recipe(copy.deepcopy(cfg), crop, sync_bn_to_bn=True)
    cache = {} if cache is None else cache
    # (network, train mode, auxiliary heads) of the teacher and the student
    networks = dict(teacher=(cfg.model.teacher, False,
                             teacher_runs_auxiliary(cfg)),
                    student=(cfg.model.architecture, True, True))
    keys = {
        role:
        json.dumps([network.to_dict(), train, auxiliary, crop],
                   sort_keys=True,
                   default=str)
        for role, (network, train, auxiliary) in networks.items()
    }
    missing = [role for role in networks if keys[role] not in cache]
    if missing:
        model = build_model(cfg, False, 'cpu')
        for role in missing:
            _, train, auxiliary = networks[role]
            network = getattr(model, role).train(train)
            cache[keys[role]] = segmentor_flops(network, crop, auxiliary)
    return RecipeFlops(cache[keys['teacher']], cache[keys['student']], crop)


@dataclass
class KDBudget:
    """A recipe's cost against its student trained alone.

    Attributes:
        iters (int): The recipe's training iterations.
        flops (RecipeFlops): Teacher and student forward FLOPs.
        cost (StepCost, optional): The measured step cost
            (:func:`~gskd_mm.analysis.step_benchmark.recipe_step_cost`).
    """
    iters: int
    flops: RecipeFlops
    cost: Optional[StepCost] = None

    @property
    def step_ratio(self) -> Optional[float]:
        """The measured step cost ratio; None if it was not measured."""
        return None if self.cost is None else self.cost.ratio

    def ratio(self, by: str) -> float:
        """The ratio of the basis ``by`` (one of ``BUDGET_BASES``)."""
        if by not in BUDGET_BASES:
            raise ValueError(f'by must be one of {BUDGET_BASES}, got {by!r}')
        if by == 'flops':
            return self.flops.step_ratio
        if by == 'iters':
            return 1.0
        if self.step_ratio is None:
            raise ValueError('the step cost was not measured: measure '
                             "it, or buy the iterations by='flops'")
        return self.step_ratio

    def student_iters(self, by: str) -> int:
        """The student-only iterations the recipe's compute buys, by the
        ratio ``by``, rounded to a multiple of ``ITERS_MULTIPLE``."""
        return matched_iters(self.iters, self.ratio(by), ITERS_MULTIPLE)


def budget_table(budgets: Dict[str, KDBudget],
                 by: str) -> Tuple[List[str], List[List[str]]]:
    """The header and rows of a table of budgets, one row per recipe.

    Args:
        budgets (dict[str, KDBudget]): Recipe name -> budget.
        by (str): The basis of the student-only iterations.

    Returns:
        tuple: The header and the rows (for
        :func:`~gskd_mm.analysis.text_table` or ``markdown_table``).
    """
    header = [
        'recipe', 'teacher GFLOPs', 'student GFLOPs', 'FLOP ratio',
        'step ratio (FLOPs)'
    ]
    timed = any(b.step_ratio is not None for b in budgets.values())
    if timed:
        header += ['step cost (measured) [95 % CI]']
    header += ['iterations', f'student-only iterations (by {by})']
    rows = []
    for name, budget in budgets.items():
        flops = budget.flops
        row = [
            name, f'{flops.teacher / 1e9:.1f}', f'{flops.student / 1e9:.1f}',
            f'{flops.ratio:.2f}', f'{flops.step_ratio:.2f}'
        ]
        if timed:
            cost = budget.cost
            row.append('' if cost is None else
                       f'{cost.ratio:.2f} [{cost.low:.2f}, {cost.high:.2f}]')
        row += [str(budget.iters), str(budget.student_iters(by))]
        rows.append(row)
    return header, rows


def runner_keys() -> Tuple[str, ...]:
    """The config keys MMEngine's Runner is built from: the arguments of
    ``Runner.__init__`` (``Runner.from_cfg`` also reads
    ``model_wrapper_cfg``, which the student alone leaves out)."""
    params = inspect.signature(Runner.__init__).parameters
    return tuple(k for k in params if k not in ('self', 'cfg'))


def scale_schedulers(schedulers: List[dict], scale: float) -> List[dict]:
    """The schedulers with every ``begin`` and ``end`` scaled, so that the
    schedule keeps its shape (a warm-up over the first 1 % stays 1 %)."""
    scaled = []
    for scheduler in copy.deepcopy(schedulers):
        scheduler['begin'] = round(scheduler.get('begin', 0) * scale)
        if 'end' in scheduler:
            scheduler['end'] = max(scheduler['begin'] + 1,
                                   round(scheduler['end'] * scale))
        scaled.append(scheduler)
    return scaled


def kept_hooks(cfg: Config, drop: Sequence[type]) -> List[dict]:
    """The recipe's custom hooks that are not of the types ``drop``.

    Hook types are resolved in the registry (the recipe's default scope),
    so a subclass of a dropped type is dropped too.
    """
    kept = []
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        for hook in cfg.get('custom_hooks') or []:
            kind = hook['type']
            cls = kind if isinstance(kind, type) else HOOKS.get(kind)
            if cls is None:
                raise KeyError(
                    f'custom hook {kind!r} is not registered: import its '
                    'module first (the recipe\'s custom_imports)')
            if not issubclass(cls, tuple(drop)):
                kept.append(copy.deepcopy(hook))
    return kept


def student_only_config(cfg: Config, iters: int,
                        drop_hooks: Sequence[type]) -> Config:
    """The recipe's student trained alone for ``iters`` iterations.

    The recipe's student (``model.architecture``, with its data
    preprocessor) with the recipe's data, optimizer, schedule and runtime:
    of the keys MMEngine's Runner reads (and ``EXTRA_KEYS``), all but the
    distillation ones. Dropped: the teacher, distiller, connectors and
    discriminator (the whole algorithm ``model``), ``model_wrapper_cfg``
    (the distiller's DDP wrapper, e.g. ``AdversarialDistillDataParallel``:
    the student alone trains under MMEngine's default), the
    discriminator's optimizer and schedule (of several optimizer wrappers,
    as ``DiscriminatorOptimWrapperConstructor`` builds, the student's
    ``architecture`` one is kept), the hooks of types ``drop_hooks``, and
    the helper variables of the recipe's bases (``teacher_ckpt``,
    recorders, ``protocol_*``, the student base's own ``optimizer``, ...).
    ``train_cfg.max_iters`` becomes ``iters``, and every scheduler's
    ``begin`` and ``end`` scale by ``iters / max_iters``; validation and
    checkpoint intervals stay, and MMEngine's loop validates and saves at
    the last iteration whatever the interval.

    Args:
        cfg (Config): An iteration-based distillation recipe (not changed).
        iters (int): The student's training iterations.
        drop_hooks (Sequence[type]): Hook classes that act on a distiller
            (e.g. :class:`~gskd_mm.engine.LossGradientHook`, which the
            balancer subclasses); ``custom_hooks`` of these types or their
            subclasses are dropped, others kept.

    Returns:
        Config: The student-only config (a plain MMSeg segmentor).
    """
    if 'architecture' not in cfg.model:
        raise ValueError('the config has no model.architecture: pass a '
                         'distillation recipe')
    if 'max_iters' not in cfg.train_cfg:
        raise ValueError('the recipe is not iteration-based (no '
                         'train_cfg.max_iters): its budget cannot be scaled')
    keys = runner_keys() + EXTRA_KEYS
    matched = {k: copy.deepcopy(cfg[k]) for k in keys if k in cfg}
    matched['model'] = copy.deepcopy(cfg.model.architecture)
    wrapper = matched['optim_wrapper']
    if 'architecture' in wrapper:  # one wrapper per part of the model
        matched['optim_wrapper'] = wrapper.architecture
    schedulers = matched.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = schedulers.get('architecture', [schedulers])
    matched['param_scheduler'] = scale_schedulers(
        schedulers, iters / cfg.train_cfg.max_iters)
    matched['train_cfg'].max_iters = iters
    matched['custom_hooks'] = kept_hooks(cfg, drop_hooks)
    return Config(ConfigDict(matched))
