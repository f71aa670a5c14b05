# Copyright (c) gskd-mm contributors. All rights reserved.
"""The CPU demo's teacher: trained once per setting, then cached.

On the built-in Synthetic Scenes data, a DeepLabV3-R18 teacher is trained
once (cached, keyed by its config and the data); every student run
measures its structural gaps to it on the validation images
(:func:`teacher_and_gap_loader`).
"""
import copy
import dataclasses
import hashlib
import json
import os
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from gskd_mm.apis import init_student
from gskd_mm.utils import load_state_dict

from .dataset import FORMAT_VERSION
from .methods import TEACHER_CONFIG, load_config
from .results import TeacherResult, to_json
from .scenes import CLASSES
from .training import LOGGER, RunContext, build_runner, one_thread, train

TEACHER_SEED = 0
# Part of the teacher cache key: bump when what is cached changes.
TEACHER_CACHE_VERSION = 5


def teacher_run(out_dir: str, data_root: str, generate_cfg: dict, iters: int,
                batch_size: int, log_level: str,
                cache_dir: str) -> TeacherResult:
    """Train the teacher, or reuse the cached one of the same setting.

    The same network is also evaluated untrained (as initialised with the
    teacher's seed): the baseline that training has to beat. The cache key
    hashes the teacher's full config (data, schedule, seed included), the
    dataset's rendering version and the cache layout.

    Args:
        out_dir (str): The demo's output directory.
        data_root (str): Dataset directory.
        generate_cfg (dict): Generation parameters of the dataset.
        iters (int): Training iterations of the teacher.
        batch_size (int): Its batch size.
        log_level (str): Log level of its runs.
        cache_dir (str): gskd-mm cache directory.

    Returns:
        TeacherResult: As :func:`train`, and the untrained network's mIoU;
        ``checkpoint`` is the cached weights-only file.
    """
    cfg = load_config(TEACHER_CONFIG, data_root, generate_cfg, iters,
                      batch_size, TEACHER_SEED)
    key_text = cfg.pretty_text + json.dumps(
        dict(
            generate_cfg,
            format_version=FORMAT_VERSION,
            cache_version=TEACHER_CACHE_VERSION),
        sort_keys=True)
    key = hashlib.sha1(key_text.encode()).hexdigest()[:12]
    entry = osp.join(cache_dir, 'demo', f'teacher-{key}')
    ckpt = osp.join(entry, 'teacher.pth')
    info = osp.join(entry, 'teacher.json')
    if osp.isfile(ckpt) and osp.isfile(info):
        with open(info) as f:
            result = TeacherResult.from_json(json.load(f))
        print_log(
            f'Teacher: cached ({entry}), mIoU {result.miou:.2f}',
            logger=LOGGER)
        return dataclasses.replace(result, checkpoint=ckpt, cached=True)

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
    with one_thread():
        runner = build_runner(
            copy.deepcopy(cfg), osp.join(out_dir, 'untrained'),
            f'demo_untrained_{key}_{os.getpid()}', log_level)
        untrained = float(runner.val()['mIoU'])
        del runner
        print_log(f'Teacher untrained: mIoU {untrained:.2f}', logger=LOGGER)
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
