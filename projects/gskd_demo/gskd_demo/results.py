# Copyright (c) gskd-mm contributors. All rights reserved.
"""What the CPU demo's modules pass each other: runs, summaries, tables.

Dataclasses, each written to JSON by :func:`to_json` (as
:func:`dataclasses.asdict` gives it, method keys and comparison kinds in
their written form) and read back by its ``from_json``.
"""
import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from gskd_mm.analysis.loss_gradients import TermGradient
from gskd_mm.engine.hooks.gradient_share_balancer_hook import BalancerUpdate

from .methods import MethodKey


def to_json(value: Any) -> Any:
    """A result as JSON-able values: dataclasses as dicts of their fields,
    :class:`MethodKey` as written, enums by value."""
    if isinstance(value, MethodKey):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_json(getattr(value, f.name))
            for f in dataclasses.fields(value)
        }
    if isinstance(value, dict):
        return {to_json(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def _method_keys(data: Dict[str, Any]) -> Dict[MethodKey, Any]:
    """A dict by written method key, by :class:`MethodKey`."""
    return {MethodKey.parse(k): v for k, v in data.items()}


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


@dataclass
class RunResult:
    """One trained run: a student of one method and seed, or the teacher.

    Attributes:
        miou (float): Validation mIoU (%).
        metrics (dict[str, float]): Every validation metric.
        wall_s (float): Seconds to build, train, validate and save.
        iter_ms (float): Median milliseconds of a training step (its
            forward, backward and update).
        iteration_ms (float): Mean CPU milliseconds of a whole iteration of
            the training loop (the batch's loading, the hooks and the step;
            the first 5 and the last left out), what a run's length costs.
        gskd_ms (float): Median milliseconds per step inside GSKD's loss
            (0 without GSKD).
        student_digest (str | None): SHA-1 of the initial student.
        data_digest (str | None): SHA-1 of the first training batches.
        checkpoint (str): The trained weights.
        scalars (str): The MMEngine scalar log.
        grad_norms (dict[str, TermGradient] | None): Every term's gradient
            on the first batch, before training (``LossGradientHook``), by
            term.
        grad_norms_last (dict[str, TermGradient] | None): The same on the
            last batch.
        gskd_grad_share (float | None): GSKD's share of the task gradient
            on the first batch; None without GSKD.
        gap (float | None): Structural gap KL to the teacher.
        gap_cos (float | None): Structural gap, cosine difference.
        gap_proj (float | None): ``gap`` after the GSKD projector; None
            without one.
        gap_proj_cos (float | None): ``gap_cos`` after the GSKD projector.
        balancer (list[BalancerUpdate] | None): The balancer's updates, if
            balanced.
        iters (int | None): Its training iterations.
        seed (int | None): The run's seed (None: the teacher).
        fingerprint (str | None): What decides the result: config and
            initial weights (a stored run with the same is not run again).
    """
    miou: float
    metrics: Dict[str, float]
    wall_s: float
    iter_ms: float
    iteration_ms: float
    gskd_ms: float
    student_digest: Optional[str]
    data_digest: Optional[str]
    checkpoint: str
    scalars: str
    grad_norms: Optional[Dict[str, TermGradient]] = None
    grad_norms_last: Optional[Dict[str, TermGradient]] = None
    gskd_grad_share: Optional[float] = None
    gap: Optional[float] = None
    gap_cos: Optional[float] = None
    gap_proj: Optional[float] = None
    gap_proj_cos: Optional[float] = None
    balancer: Optional[List[BalancerUpdate]] = None
    iters: Optional[int] = None
    seed: Optional[int] = None
    fingerprint: Optional[str] = None

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> 'RunResult':
        """Read a run as stored; None for one of another layout."""
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING
        }
        if not required <= set(data) or not set(data) <= names:
            return None
        return cls(**cls.typed_fields(data))

    @staticmethod
    def typed_fields(data: Dict[str, Any]) -> Dict[str, Any]:
        """A stored run's fields, its gradients and balancer updates as
        their dataclasses."""
        data = dict(data)
        for name in ('grad_norms', 'grad_norms_last'):
            if data.get(name) is not None:
                data[name] = {
                    term: TermGradient(**g)
                    for term, g in data[name].items()
                }
        if data.get('balancer') is not None:
            data['balancer'] = [BalancerUpdate(**u) for u in data['balancer']]
        return data


@dataclass
class TeacherResult(RunResult):
    """The demo's teacher: its run, and the same network untrained.

    Attributes:
        untrained_miou (float): Its mIoU as initialised.
        cached (bool): Whether it came from the cache.
        config (str): Its config file.
    """
    untrained_miou: float = math.nan
    cached: bool = False
    config: str = ''

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> 'TeacherResult':
        """Read the teacher as stored."""
        return cls(**cls.typed_fields(data))


@dataclass
class Stat:
    """Mean and sample standard deviation over seeds (None: undefined)."""
    mean: Optional[float]
    std: Optional[float]

    @classmethod
    def of(cls, values: List[Optional[float]]) -> 'Stat':
        """The statistics of a list (undefined if a value is None)."""
        if not values or any(v is None for v in values):
            return cls(None, None)
        array = np.asarray(values, dtype=np.float64)
        return cls(
            float(array.mean()),
            float(array.std(ddof=1)) if len(array) > 1 else None)


@dataclass
class MethodSummary:
    """One method's runs and their statistics over seeds.

    Attributes:
        label (str): Name in tables and figures.
        config (str): Its config file.
        loss_gskd (dict | None): Overrides of the GSKD loss (a variant).
        baseline (MethodKey | None): The method it is compared with (a GSKD
            recipe's base).
        iters (int): Training iterations of each run.
        stats (dict[str, Stat]): Per metric (``METRICS``).
        gskd_grad_share (float | None): GSKD's mean share on the first
            batch.
        wall_s_mean (float): Mean seconds of a run.
        iter_ms (float): Median milliseconds of a training step.
        gskd_ms (float): Median milliseconds inside GSKD's loss per step.
        collapsed (int): Runs at the majority-class mIoU.
        runs (list[RunResult]): Every seed's run.
    """
    label: str
    config: str
    loss_gskd: Optional[dict]
    baseline: Optional[MethodKey]
    iters: int
    stats: Dict[str, Stat]
    gskd_grad_share: Optional[float]
    wall_s_mean: float
    iter_ms: float
    gskd_ms: float
    collapsed: int
    runs: List[RunResult]

    @property
    def n(self) -> int:
        """The number of seeds."""
        return len(self.runs)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> 'MethodSummary':
        """Read a method's summary as stored."""
        data = dict(data)
        if data['baseline'] is not None:
            data['baseline'] = MethodKey.parse(data['baseline'])
        data['stats'] = {k: Stat(**v) for k, v in data['stats'].items()}
        data['runs'] = [RunResult.from_json(r) for r in data['runs']]
        return cls(**data)


class ComparisonKind(enum.Enum):
    """What a paired comparison compares: a method minus its baseline."""
    #: A GSKD recipe or variant against its base recipe.
    BASE = 'base'
    #: A balanced variant against the same at its fixed weight.
    FIXED = 'fixed'
    #: A distillation method against no KD, at equal iterations.
    KD = 'kd'
    #: A distillation method against no KD trained for the iterations its
    #: steps cost (equal compute; a cached method's without its cache
    #: pass, as a user who reuses the cache over many runs pays).
    COMPUTE = 'compute'
    #: A cached method against no KD trained for the iterations its steps
    #: and its one-off cache pass cost (equal compute, pass amortised).
    COMPUTE_AMORTISED = 'compute_amortised'
    #: No KD at twice the iterations against no KD.
    DOUBLING = 'doubling'


@dataclass
class Comparison:
    """One method minus another, paired by seed.

    Attributes:
        method (MethodKey): The method.
        baseline (MethodKey): The method it is compared with.
        kind (ComparisonKind): What the pair compares.
        intervals (dict[str, PairedInterval]): Per metric defined in both.
    """
    method: MethodKey
    baseline: MethodKey
    kind: ComparisonKind
    intervals: Dict[str, PairedInterval] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> 'Comparison':
        """Read a comparison as stored."""
        return cls(
            method=MethodKey.parse(data['method']),
            baseline=MethodKey.parse(data['baseline']),
            kind=ComparisonKind(data['kind']),
            intervals={
                k: PairedInterval(**v)
                for k, v in data['intervals'].items()
            })


@dataclass
class Settings:
    """How the demo ran.

    Attributes:
        iters (int): Iterations per student (the schedule).
        teacher_iters (int): Iterations of the teacher.
        batch_size (int): The students' batch.
        teacher_batch_size (int): The teacher's batch.
        seeds (int): Seeds per method.
        workers (int): Processes that trained the students.
        torch_threads (int): CPU threads of every run.
    """
    iters: int
    teacher_iters: int
    batch_size: int
    teacher_batch_size: int
    seeds: int
    workers: int
    torch_threads: int = 1


@dataclass
class DatasetInfo:
    """The demo's Synthetic Scenes."""
    name: str
    num_train: int
    num_val: int
    img_size: int
    num_classes: int
    data_root: str
    generate_cfg: dict


@dataclass
class DemoSummary:
    """Everything the demo's table and figures show.

    Attributes:
        dataset (DatasetInfo): The data.
        settings (Settings): How it ran.
        params (dict[str, int]): Parameters of student, teacher and
            projectors.
        teacher (TeacherResult): The teacher.
        majority_class_miou (float): mIoU of the majority class everywhere.
        init_gap (dict[str, Stat]): Structural gaps (``kl``, ``cos``) of the
            students before training.
        methods (dict[MethodKey, MethodSummary]): By method.
        paired (dict[str, Comparison]): The paired comparisons, by name.
        pairing_check (dict[str, bool]): Whether the runs of a seed started
            alike (``student``) and saw the same data (``data``).
        costs (dict[MethodKey, float]): The step cost ratios the
            compute-matched runs were set with (empty without such runs).
        pass_costs (dict[MethodKey, float]): Per cached method, its cache
            pass in no-KD iterations (empty without cached methods).
        total_wall_s (float): Seconds of the whole demo.
        figures (dict[str, str]): The figures written, by name.
    """
    dataset: DatasetInfo
    settings: Settings
    params: Dict[str, int]
    teacher: TeacherResult
    majority_class_miou: float
    init_gap: Dict[str, Stat]
    methods: Dict[MethodKey, MethodSummary]
    paired: Dict[str, Comparison]
    pairing_check: Dict[str, bool]
    total_wall_s: float
    costs: Dict[MethodKey, float] = field(default_factory=dict)
    pass_costs: Dict[MethodKey, float] = field(default_factory=dict)
    figures: Dict[str, str] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        """The summary as JSON-able dicts (see :func:`to_json`)."""
        return to_json(self)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> 'DemoSummary':
        """Read a summary written by :meth:`to_json`."""
        return cls(
            dataset=DatasetInfo(**data['dataset']),
            settings=Settings(**data['settings']),
            params=data['params'],
            teacher=TeacherResult.from_json(data['teacher']),
            majority_class_miou=data['majority_class_miou'],
            init_gap={k: Stat(**v)
                      for k, v in data['init_gap'].items()},
            methods={
                k: MethodSummary.from_json(v)
                for k, v in _method_keys(data['methods']).items()
            },
            paired={
                k: Comparison.from_json(v)
                for k, v in data['paired'].items()
            },
            pairing_check=data['pairing_check'],
            total_wall_s=data['total_wall_s'],
            costs=_method_keys(data.get('costs', {})),
            pass_costs=_method_keys(data.get('pass_costs', {})),
            figures=data.get('figures', {}))
