# Copyright (c) gskd-mm contributors. All rights reserved.
"""What the CPU demo's modules pass each other: runs, summaries, tables.

Dataclasses, each written to JSON as :func:`dataclasses.asdict` gives it
and read back by its ``from_json``.
"""
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from .stats import PairedInterval


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
        grad_norms (dict | None): Every term's gradient on the first batch,
            before training (``LossGradientHook``), by term.
        grad_norms_last (dict | None): The same on the last batch.
        gskd_grad_share (float | None): GSKD's share of the task gradient
            on the first batch; None without GSKD.
        gap (float | None): Structural gap KL to the teacher.
        gap_cos (float | None): Structural gap, cosine difference.
        gap_proj (float | None): ``gap`` after the GSKD projector; None
            without one.
        gap_proj_cos (float | None): ``gap_cos`` after the GSKD projector.
        balancer (list[dict] | None): The balancer's updates, if balanced.
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
    grad_norms: Optional[Dict[str, dict]] = None
    grad_norms_last: Optional[Dict[str, dict]] = None
    gskd_grad_share: Optional[float] = None
    gap: Optional[float] = None
    gap_cos: Optional[float] = None
    gap_proj: Optional[float] = None
    gap_proj_cos: Optional[float] = None
    balancer: Optional[List[dict]] = None
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
        return cls(**data)


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
        baseline (str | None): The method it is compared with (a GSKD
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
    baseline: Optional[str]
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
        data = dict(data)
        data['stats'] = {k: Stat(**v) for k, v in data['stats'].items()}
        data['runs'] = [RunResult.from_json(r) for r in data['runs']]
        return cls(**data)


@dataclass
class Comparison:
    """One method minus another, paired by seed.

    Attributes:
        method (str): The method's key.
        baseline (str): The key of the method it is compared with.
        kind (str): What the pair compares (see ``report.COMPARISONS``).
        intervals (dict[str, PairedInterval]): Per metric defined in both.
    """
    method: str
    baseline: str
    kind: str
    intervals: Dict[str, PairedInterval] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> 'Comparison':
        data = dict(data)
        data['intervals'] = {
            k: PairedInterval(**v)
            for k, v in data['intervals'].items()
        }
        return cls(**data)


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
        methods (dict[str, MethodSummary]): By method key.
        paired (dict[str, Comparison]): The paired comparisons, by name.
        pairing_check (dict[str, bool]): Whether the runs of a seed started
            alike (``student``) and saw the same data (``data``).
        costs (dict[str, float]): The step cost ratios the compute-matched
            runs were set with (empty without such runs).
        total_wall_s (float): Seconds of the whole demo.
        figures (dict[str, str]): The figures written, by name.
    """
    dataset: DatasetInfo
    settings: Settings
    params: Dict[str, int]
    teacher: TeacherResult
    majority_class_miou: float
    init_gap: Dict[str, Stat]
    methods: Dict[str, MethodSummary]
    paired: Dict[str, Comparison]
    pairing_check: Dict[str, bool]
    total_wall_s: float
    costs: Dict[str, float] = field(default_factory=dict)
    figures: Dict[str, str] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        """The summary as JSON-able dicts."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> 'DemoSummary':
        """Read a summary written by :meth:`to_json`."""
        return cls(
            dataset=DatasetInfo(**data['dataset']),
            settings=Settings(**data['settings']),
            params=data['params'],
            teacher=TeacherResult(**data['teacher']),
            majority_class_miou=data['majority_class_miou'],
            init_gap={k: Stat(**v)
                      for k, v in data['init_gap'].items()},
            methods={
                k: MethodSummary.from_json(v)
                for k, v in data['methods'].items()
            },
            paired={
                k: Comparison.from_json(v)
                for k, v in data['paired'].items()
            },
            pairing_check=data['pairing_check'],
            total_wall_s=data['total_wall_s'],
            costs=data.get('costs', {}),
            figures=data.get('figures', {}))
