# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo's teacher: shipped, or trained once per setting and cached.

On the built-in Synthetic Scenes data, the demo's DeepLabV3-R18 teacher of
the default setting ships with the repository
(``projects/gskd_demo/checkpoints``, with its provenance): the demo loads
it, checks its hash and measures it. A teacher of any other setting (e.g.
``--teacher-iters``) is trained once (cached, keyed by its config and the
data). Every student run measures its structural gaps to the teacher on
the validation images (:func:`teacher_and_gap_loader`).
"""
import copy
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import os.path as osp
import platform
import shutil
from typing import Dict, Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from gskd_mm.apis import init_student
from gskd_mm.teacher_cache import sha256_file
from gskd_mm.utils import load_state_dict

from .dataset import FORMAT_VERSION
from .methods import TEACHER_CONFIG, load_config
from .results import TeacherResult, to_json
from .scenes import CLASSES
from .training import LOGGER, RunContext, build_runner, one_thread, train

TEACHER_SEED = 0
# Part of the teacher cache key: bump when what is cached changes.
TEACHER_CACHE_VERSION = 5
# The shipped teacher: its weights, its provenance (the setting it was
# trained in, its sha256, the command that made it, its result) and its
# iterations, the default of the demo's `--teacher-iters`
# (projects/gskd_demo/docs/teacher.md says how they were chosen).
SHIPPED_TEACHER = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'checkpoints',
    'demo_teacher.pth')
SHIPPED_TEACHER_INFO = osp.splitext(SHIPPED_TEACHER)[0] + '.json'
REPO_ROOT = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
SHIPPED_TEACHER_ITERS = 3200
# Stands for the dataset directory in a setting key: the weights do not
# depend on where the generated data lie.
DATA_ROOT_PLACEHOLDER = '<data_root>'


def setting_key(cfg: Config, generate_cfg: dict) -> str:
    """What decides a demo teacher's weights, as a portable SHA-256.

    The teacher's full config (schedule, batch size and seed included) with
    the dataset directory left out, the dataset's generation parameters
    and its rendering version: the key of the shipped teacher, which must
    match on any machine.

    Args:
        cfg (Config): The teacher's config (see :func:`.load_config`).
        generate_cfg (dict): Generation parameters of the dataset.

    Returns:
        str: The hex digest.
    """
    cfg = copy.deepcopy(cfg)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = DATA_ROOT_PLACEHOLDER
    text = cfg.pretty_text + json.dumps(
        dict(generate_cfg, format_version=FORMAT_VERSION), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def shipped_teacher_info(cfg: Config, generate_cfg: dict,
                         iters: int) -> Optional[dict]:
    """The shipped teacher's provenance if it is of this setting.

    Its weights are checked on the way: a shipped teacher of this setting
    whose file is missing or altered is an error, never a silent retrain.

    Args:
        cfg (Config): The teacher's config for the run.
        generate_cfg (dict): Generation parameters of the dataset.
        iters (int): The teacher's iterations.

    Returns:
        dict | None: The provenance (``SHIPPED_TEACHER_INFO``), or None when
        the shipped teacher is of another setting.

    Raises:
        FileNotFoundError: The provenance is missing at the shipped
            iterations, or the weights are missing.
        ValueError: The weights' SHA-256 is not the provenance's.
    """
    restore = ('Restore it (in the repository: git checkout -- '
               f'{osp.relpath(SHIPPED_TEACHER, REPO_ROOT)} '
               f'{osp.relpath(SHIPPED_TEACHER_INFO, REPO_ROOT)}) or train a '
               'teacher with another --teacher-iters')
    if not osp.isfile(SHIPPED_TEACHER_INFO):
        if iters != SHIPPED_TEACHER_ITERS:
            return None
        raise FileNotFoundError(
            f'The shipped demo teacher\'s provenance '
            f'{SHIPPED_TEACHER_INFO} is missing. {restore}.')
    with open(SHIPPED_TEACHER_INFO) as f:
        info = json.load(f)
    if info['setting_key'] != setting_key(cfg, generate_cfg):
        return None
    if not osp.isfile(SHIPPED_TEACHER):
        raise FileNotFoundError(
            f'The shipped demo teacher {SHIPPED_TEACHER} is missing. '
            f'{restore}.')
    digest = sha256_file(SHIPPED_TEACHER)
    if digest != info['sha256']:
        raise ValueError(
            f'The shipped demo teacher {SHIPPED_TEACHER} has been altered: '
            f'its SHA-256 is {digest}, its provenance '
            f'({SHIPPED_TEACHER_INFO}) says {info["sha256"]}. {restore}, '
            f'or remake both with: {info["command"]}')
    return info


def val_metrics(cfg: Config,
                work_dir: str,
                name: str,
                log_level: str,
                checkpoint: Optional[str] = None) -> Dict[str, float]:
    """Validation metrics of a demo config's network, on one thread.

    Args:
        cfg (Config): The config (not modified).
        work_dir (str): The Runner's work_dir.
        name (str): Experiment name (unique within the process).
        log_level (str): Log level of the run.
        checkpoint (str, optional): Weights to load; None: the network as
            initialised with the config's seed. Defaults to None.

    Returns:
        dict[str, float]: The metrics (``mIoU`` in %).
    """
    with one_thread():
        runner = build_runner(copy.deepcopy(cfg), work_dir, name, log_level)
        if checkpoint is not None:  # strictly, without MMEngine's log line
            runner.model.load_state_dict(load_state_dict(checkpoint))
        return {k: float(v) for k, v in runner.val().items()}


def untrained_miou(cfg: Config, out_dir: str, key: str,
                   log_level: str) -> float:
    """The teacher's network as initialised: its mIoU, logged."""
    miou = val_metrics(cfg, osp.join(out_dir, 'untrained'),
                       f'demo_untrained_{key}_{os.getpid()}',
                       log_level)['mIoU']
    print_log(f'Teacher untrained: mIoU {miou:.2f}', logger=LOGGER)
    return miou


def load_shipped_teacher(cfg: Config, info: dict, key: str, out_dir: str,
                         log_level: str, cache_dir: str) -> TeacherResult:
    """The shipped teacher, measured here on the validation images.

    Its mIoU (and the untrained network's) is measured, not copied; the
    training's times, digests and gradients are those of its provenance.
    The runs use a copy of its file in the cache, named by its SHA-256:
    finished runs, which the demo keys by the teacher's path, then see
    another shipped teacher as another teacher.

    Args:
        cfg (Config): The teacher's config for the run.
        info (dict): Its provenance (checked by
            :func:`shipped_teacher_info`).
        key (str): The setting's cache key (names the runs).
        out_dir (str): The demo's output directory.
        log_level (str): Log level of the runs.
        cache_dir (str): gskd-mm cache directory.

    Returns:
        TeacherResult: ``checkpoint`` is the copy, ``cached`` True.
    """
    ckpt = osp.join(cache_dir, 'demo',
                    f'teacher-shipped-{info["sha256"][:12]}', 'teacher.pth')
    if not osp.isfile(ckpt) or sha256_file(ckpt) != info['sha256']:
        os.makedirs(osp.dirname(ckpt), exist_ok=True)
        tmp = f'{ckpt}.tmp{os.getpid()}'
        shutil.copyfile(SHIPPED_TEACHER, tmp)
        os.replace(tmp, ckpt)
    untrained = untrained_miou(cfg, out_dir, key, log_level)
    metrics = val_metrics(cfg, osp.join(out_dir, 'teacher_shipped'),
                          f'demo_teacher_shipped_{key}_{os.getpid()}',
                          log_level, ckpt)
    made = info['result']
    if abs(metrics['mIoU'] - made['miou']) > 0.05:
        print_log(
            f'The shipped teacher measures {metrics["mIoU"]:.2f} mIoU here, '
            f'{made["miou"]:.2f} where it was made ({info["made_on"]})',
            logger=LOGGER,
            level=logging.WARNING)
    return TeacherResult(**TeacherResult.typed_fields(
        dict(
            made,
            miou=metrics['mIoU'],
            metrics=metrics,
            checkpoint=ckpt,
            scalars='',
            untrained_miou=untrained,
            cached=True)))


def _shipped_teacher(cfg: Config, info: dict, key: str, iters: int,
                     out_dir: str, log_level: str,
                     cache_dir: str) -> TeacherResult:
    """The shipped teacher (:func:`load_shipped_teacher`), logged."""
    print_log(
        f'Teacher: shipped ({osp.relpath(SHIPPED_TEACHER, REPO_ROOT)}, '
        f'{iters} iterations, SHA-256 checked)',
        logger=LOGGER)
    result = load_shipped_teacher(cfg, info, key, out_dir, log_level,
                                  cache_dir)
    print_log(f'Teacher: mIoU {result.miou:.2f}', logger=LOGGER)
    return result


def _teacher_cache_key(cfg: Config, generate_cfg: dict) -> str:
    """The teacher's cache key: its full config, the dataset's generation
    parameters and rendering version, and the cache layout, hashed."""
    key_text = cfg.pretty_text + json.dumps(
        dict(
            generate_cfg,
            format_version=FORMAT_VERSION,
            cache_version=TEACHER_CACHE_VERSION),
        sort_keys=True)
    return hashlib.sha1(key_text.encode()).hexdigest()[:12]


def _cached_teacher(entry: str) -> Optional[TeacherResult]:
    """The teacher stored in cache entry ``entry``, logged (None if it is
    not complete)."""
    ckpt = osp.join(entry, 'teacher.pth')
    info = osp.join(entry, 'teacher.json')
    if not (osp.isfile(ckpt) and osp.isfile(info)):
        return None
    with open(info) as f:
        result = TeacherResult.from_json(json.load(f))
    print_log(
        f'Teacher: cached ({entry}), mIoU {result.miou:.2f}', logger=LOGGER)
    return dataclasses.replace(result, checkpoint=ckpt, cached=True)


def teacher_run(out_dir: str,
                data_root: str,
                generate_cfg: dict,
                iters: int,
                batch_size: int,
                log_level: str,
                cache_dir: str,
                shipped: bool = True) -> TeacherResult:
    """Load the shipped teacher, or train the teacher or reuse the cached
    one of the same setting.

    The shipped teacher (``SHIPPED_TEACHER``) serves the setting it was
    trained in (:func:`setting_key`): its hash is checked, it is measured
    on the validation images, nothing is trained. Any other setting trains
    a teacher once and caches it. The same network is also evaluated
    untrained (as initialised with the teacher's seed): the baseline that
    training has to beat. The cache key hashes the teacher's full config
    (data, schedule, seed included), the dataset's rendering version and
    the cache layout.

    Args:
        out_dir (str): The demo's output directory.
        data_root (str): Dataset directory.
        generate_cfg (dict): Generation parameters of the dataset.
        iters (int): Training iterations of the teacher.
        batch_size (int): Its batch size.
        log_level (str): Log level of its runs.
        cache_dir (str): gskd-mm cache directory.
        shipped (bool): Load the shipped teacher if it is of this setting.
            False trains (or reuses the cache) whatever ships, as
            :func:`export_teacher` does. Defaults to True.

    Returns:
        TeacherResult: As :func:`train`, and the untrained network's mIoU;
        ``checkpoint`` is the cached weights-only file (for the shipped
        teacher, its copy named by its hash).
    """
    cfg = load_config(TEACHER_CONFIG, data_root, generate_cfg, iters,
                      batch_size, TEACHER_SEED)
    key = _teacher_cache_key(cfg, generate_cfg)
    info = shipped_teacher_info(cfg, generate_cfg, iters) if shipped else None
    if info is not None:
        return _shipped_teacher(cfg, info, key, iters, out_dir, log_level,
                                cache_dir)
    entry = osp.join(cache_dir, 'demo', f'teacher-{key}')
    ckpt = osp.join(entry, 'teacher.pth')
    cached = _cached_teacher(entry)
    if cached is not None:
        return cached
    print_log(
        f'Teacher: training {iters} iterations (once; cached in {entry})',
        logger=LOGGER)
    result = _train_teacher(cfg, out_dir, key, log_level)
    _store_teacher(result, entry, iters)
    print_log(f'Teacher: mIoU {result.miou:.2f}', logger=LOGGER)
    return dataclasses.replace(result, checkpoint=ckpt)


def _train_teacher(cfg: Config, out_dir: str, key: str,
                   log_level: str) -> TeacherResult:
    """Evaluate the teacher's network untrained, then train it (its cache
    ``key`` names the runs)."""
    untrained = untrained_miou(cfg, out_dir, key, log_level)
    with one_thread():
        result = train(
            cfg,
            osp.join(out_dir, 'teacher'),
            f'demo_teacher_{key}_{os.getpid()}',
            log_level,
            progress=True)
    result = TeacherResult(
        **{f.name: getattr(result, f.name)
           for f in dataclasses.fields(result)},
        untrained_miou=untrained,
        config=TEACHER_CONFIG)
    return result


def _store_teacher(result: TeacherResult, entry: str, iters: int) -> None:
    """Store a trained teacher in its cache entry: its weights and its
    result (``teacher.pth``, ``teacher.json``)."""
    ckpt = osp.join(entry, 'teacher.pth')
    # Only the weights are kept (a file that torch's weights-only loading,
    # hence MMRazor's `teacher_ckpt`, reads); written aside, then moved in
    # one step.
    os.makedirs(entry, exist_ok=True)
    tmp = f'{ckpt}.tmp{os.getpid()}'
    torch.save(
        dict(
            state_dict=load_state_dict(result.checkpoint),
            meta=dict(
                config=TEACHER_CONFIG,
                iters=iters,
                dataset_classes=list(CLASSES))), tmp)
    os.replace(tmp, ckpt)
    with open(osp.join(entry, 'teacher.json'), 'w') as f:
        json.dump(to_json(result), f, indent=2)


def _provenance(path: str, result: TeacherResult, command: str,
                cfg: Config, iters: int, batch_size: int,
                generate_cfg: dict) -> dict:
    """The provenance of the teacher written to ``path`` (see
    :func:`export_teacher`)."""
    made = dataclasses.asdict(result)
    for local in ('checkpoint', 'scalars', 'cached'):
        made.pop(local)
    return dict(
        file=osp.basename(path),
        sha256=sha256_file(path),
        size_bytes=osp.getsize(path),
        command=command,
        config=TEACHER_CONFIG,
        iters=iters,
        batch_size=batch_size,
        seed=TEACHER_SEED,
        generate_cfg=generate_cfg,
        format_version=FORMAT_VERSION,
        setting_key=setting_key(cfg, generate_cfg),
        made_on=datetime.datetime.now(
            datetime.timezone.utc).strftime('%Y-%m-%d'),
        machine=dict(
            processor=platform.processor() or platform.machine(),
            torch=torch.__version__,
            torch_threads=1),
        result=made)


def export_teacher(out_dir: str,
                   data_root: str,
                   generate_cfg: dict,
                   iters: int,
                   batch_size: int,
                   log_level: str,
                   cache_dir: str,
                   command: str,
                   path: str = SHIPPED_TEACHER) -> dict:
    """Train the teacher of a setting (or reuse its cache entry) and write
    it as the shipped teacher, with its provenance.

    The weights file is the cache entry's, byte for byte (a weights-only
    state dict of fp32 tensors); the provenance, next to it (``.json``),
    holds its SHA-256 and size, the setting's key and parameters, the
    command, the training's result and where it was made.

    Args:
        out_dir (str): The demo's output directory.
        data_root (str): Dataset directory.
        generate_cfg (dict): Generation parameters of the dataset.
        iters (int): Training iterations of the teacher.
        batch_size (int): Its batch size.
        log_level (str): Log level of its runs.
        cache_dir (str): gskd-mm cache directory.
        command (str): The command that makes it (stored).
        path (str): The weights file to write. Defaults to
            ``SHIPPED_TEACHER``.

    Returns:
        dict: The provenance written.
    """
    result = teacher_run(
        out_dir,
        data_root,
        generate_cfg,
        iters,
        batch_size,
        log_level,
        cache_dir,
        shipped=False)
    cfg = load_config(TEACHER_CONFIG, data_root, generate_cfg, iters,
                      batch_size, TEACHER_SEED)
    os.makedirs(osp.dirname(path), exist_ok=True)
    shutil.copyfile(result.checkpoint, path)
    info = _provenance(path, result, command, cfg, iters, batch_size,
                       generate_cfg)
    with open(osp.splitext(path)[0] + '.json', 'w') as f:
        json.dump(info, f, indent=2)
        f.write('\n')
    print_log(
        f'Wrote {path} ({info["size_bytes"] / 1e6:.2f} MB, SHA-256 '
        f'{info["sha256"]}) and its provenance',
        logger=LOGGER)
    return info


def val_loader(cfg: Config):
    """The validation dataloader of a demo config."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        return Runner.build_dataloader(copy.deepcopy(cfg.val_dataloader))


def teacher_and_gap_loader(ctx: RunContext) -> tuple:
    """The trained teacher (eval mode) and the validation batches of the
    structural gaps."""
    teacher_cfg = load_config(TEACHER_CONFIG, ctx.data_root, ctx.generate_cfg,
                              1, 1, 0)
    return (init_student(teacher_cfg, ctx.teacher_ckpt),
            val_loader(teacher_cfg))
