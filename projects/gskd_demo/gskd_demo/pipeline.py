# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo from start to end: data, runs, summary, figures."""
import functools
import json
import os.path as osp
import time
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

from gskd_mm.apis import (gskd_view, init_distiller, init_student,
                          load_sample)
from gskd_mm.visualization import dataset_classes, plot_gskd_similarity

from .data import (IMG_SIZE, majority_class_miou, prepare_data,
                   richest_val_images)
from .dataset import default_cache_dir, split_names
from .figures import plot_balancer, plot_loss_curves, plot_miou
from .methods import (GSKD_PAIRS, METHODS, STUDENT_CONFIG, TEACHER_CONFIG,
                      MethodKey, config_dir, load_config, method_spec)
from .parallel import student_runs
from .predictions import plot_predictions
from .results import (DatasetInfo, DemoSummary, Settings, TeacherResult,
                      to_json)
from .scenes import CLASSES, IGNORE_INDEX
from .stats import Runs, summarise
from .teacher import teacher_run
from .training import RunContext, num_params, prepare_caches


def _method_keys(methods: Sequence[Union[MethodKey, str]], seeds: int,
                 iters: int, teacher_iters: int) -> List[MethodKey]:
    """The methods as keys, once the run counts are checked."""
    methods = [MethodKey.of(key) for key in methods]
    if seeds < 1 or iters < 1 or teacher_iters < 1:
        raise ValueError('seeds, iters and teacher_iters must be >= 1')
    return methods


def _train_students(ctx: RunContext, methods: List[MethodKey], seeds: int,
                    workers: int, teacher: TeacherResult
                    ) -> Tuple[Runs, List[Dict[str, float]]]:
    """Make the cached methods' teacher caches, then train every method's
    students (see :func:`.parallel.student_runs`), saving what is done."""
    prepare_caches(ctx, methods)
    return student_runs(
        methods, seeds, ctx, workers,
        functools.partial(save_partial, ctx.out_dir, teacher))


def _model_params(data_root: str, generate_cfg: dict) -> Dict[str, int]:
    """Parameters of the student, the teacher and the projectors (those of
    DIST+GSKD, see :func:`.training.num_params`)."""
    return num_params(
        load_config(METHODS['dist_gskd'][1], data_root, generate_cfg, 1, 1, 0))


def run_demo(methods: Sequence[Union[MethodKey, str]],
             seeds: int,
             iters: int,
             teacher_iters: int,
             batch_size: int,
             teacher_batch_size: int,
             num_train: int,
             num_val: int,
             out_dir: str,
             log_level: str = 'WARNING',
             workers: int = 1,
             costs: Optional[Dict[MethodKey, float]] = None,
             pass_costs: Optional[Dict[MethodKey, float]] = None
             ) -> DemoSummary:
    """Generate the data, train the teacher (or reuse it), make the teacher
    cache of the cached methods (once) and train the students.

    Args:
        methods (Sequence[MethodKey | str]): The methods (or their keys as
            written, see :class:`.MethodKey`).
        seeds (int): Seeds per method (runs are paired by seed).
        iters (int): Iterations per student.
        teacher_iters (int): Iterations of the teacher.
        batch_size (int): Training batch size of the students.
        teacher_batch_size (int): Training batch size of the teacher.
        num_train (int): Training images.
        num_val (int): Validation images.
        out_dir (str): Where runs, table and figures go.
        log_level (str): Log level of the training runs. Defaults to
            'WARNING'.
        workers (int): Processes that train the students in parallel.
            Every student run uses one CPU thread, whatever this is.
            Defaults to 1.
        costs (dict[MethodKey, float], optional): The step cost ratios that
            set the iterations of the compute-matched runs among
            ``methods`` (stored with the results). Defaults to None.
        pass_costs (dict[MethodKey, float], optional): The cached methods'
            cache passes in no-KD iterations, that set the runs at equal
            compute with the pass amortised. Defaults to None.

    Returns:
        DemoSummary: The summary (see :func:`.stats.summarise`).
    """
    methods = _method_keys(methods, seeds, iters, teacher_iters)
    start = time.perf_counter()
    data_root, generate_cfg = prepare_data(num_train, num_val)
    teacher = teacher_run(out_dir, data_root, generate_cfg, teacher_iters,
                          teacher_batch_size, log_level,
                          default_cache_dir())
    ctx = RunContext(iters, batch_size, out_dir, data_root, generate_cfg,
                     teacher.checkpoint, log_level)
    runs, init_gaps = _train_students(ctx, methods, seeds, workers, teacher)
    params = _model_params(data_root, generate_cfg)
    return summarise(
        Settings(iters, teacher_iters, batch_size, teacher_batch_size, seeds,
                 workers, torch_threads=1),  # see training.one_thread
        DatasetInfo('Synthetic Scenes', num_train, num_val, IMG_SIZE,
                    len(CLASSES), data_root, generate_cfg),
        teacher, runs, init_gaps, majority_class_miou(data_root), params,
        time.perf_counter() - start, costs, pass_costs)


def save_partial(out_dir: str, teacher: TeacherResult, runs: Runs,
                 init_gaps: List[Dict[str, float]]) -> None:
    """Write the seeds finished so far (``results_partial.json``), should
    the demo be stopped before the end."""
    with open(osp.join(out_dir, 'results_partial.json'), 'w') as f:
        json.dump(
            to_json(dict(teacher=teacher, runs=runs, init_gaps=init_gaps)),
            f,
            indent=2)


def plot_similarity(summary: DemoSummary, key: MethodKey, name: str,
                    class_names: Sequence[str], palette: Sequence,
                    out_file: str) -> str:
    """GSKD's view of one val image (``name``) by the first seed's student
    of a GSKD recipe (``key``)."""
    data_root = summary.dataset.data_root
    method = summary.methods[key]
    cfg = load_config(
        method_spec(key).config, data_root, summary.dataset.generate_cfg, 1,
        1, 0)
    model, _ = init_distiller(cfg, method.runs[0].checkpoint)
    image = osp.join(data_root, 'img_dir', 'val', name + '.png')
    ann = osp.join(data_root, 'ann_dir', 'val', name + '.png')
    return plot_gskd_similarity(
        gskd_view(model, load_sample(cfg, image, ann)),
        class_names,
        palette,
        out_file,
        title=f'Synthetic Scenes (synthetic data): student '
        f'{method.label}, first seed, after '
        f'{summary.settings.iters} iterations; val image {name}')


def draw_figures(summary: DemoSummary,
                 out_dir: str,
                 per_method: bool = True) -> Dict[str, str]:
    """Write the figures of the demo; return their paths by name.

    Args:
        summary (DemoSummary): The demo's summary.
        out_dir (str): Directory of the figures.
        per_method (bool): Also the figures with a panel or a line per
            method (loss curves, predictions, similarity), which many
            methods make unreadable. Defaults to True.

    Returns:
        dict[str, str]: ``miou``; ``balancer`` when a balanced method ran;
        with ``per_method``, ``loss_curves``, ``predictions`` and, when a
        GSKD recipe ran, ``similarity``.
    """
    data_root = summary.dataset.data_root
    generate_cfg = summary.dataset.generate_cfg
    methods = summary.methods
    figures = dict(miou=plot_miou(summary, osp.join(out_dir, 'miou.png')))
    balancer = plot_balancer(summary, osp.join(out_dir, 'balancer.png'))
    if balancer is not None:
        figures['balancer'] = balancer
    if not per_method:
        return figures
    figures['loss_curves'] = plot_loss_curves(
        summary, osp.join(out_dir, 'loss_curves.png'))
    student_cfg = load_config(STUDENT_CONFIG, data_root, generate_cfg, 1, 1, 0)
    class_names, palette = dataset_classes(student_cfg)
    images = richest_val_images(data_root, 3)
    gskd_key = next((k for k in map(MethodKey, GSKD_PAIRS) if k in methods),
                    None)
    if gskd_key is not None:
        figures['similarity'] = plot_similarity(
            summary, gskd_key, split_names(data_root, 'val')[images[0]],
            class_names, palette, osp.join(out_dir, 'similarity.png'))

    with DefaultScope.overwrite_default_scope('mmseg'):
        from mmseg.registry import DATASETS
        dataset = DATASETS.build(student_cfg.val_dataloader.dataset)
    batch = pseudo_collate([dataset[i] for i in images])
    teacher_cfg = load_config(TEACHER_CONFIG, data_root, generate_cfg, 1, 1, 0)
    models = [('teacher',
               init_student(teacher_cfg, summary.teacher.checkpoint),
               summary.teacher.miou)]
    for key, method in methods.items():
        run = method.runs[0]
        cfg = osp.join(config_dir(), method_spec(key).config)
        models.append((f'student {method.label}',
                       init_student(cfg, run.checkpoint), run.miou))
    figures['predictions'] = plot_predictions(
        models, batch, class_names, palette,
        osp.join(out_dir, 'predictions.png'), IGNORE_INDEX)
    return figures
