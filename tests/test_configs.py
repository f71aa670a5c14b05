# Copyright (c) gskd-mm contributors. All rights reserved.
"""Every recipe loads, builds, trains one step, and records real layers."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmrazor.registry import MODELS

from gskd_mm.testing import num_classes_of, random_seg_batch, shrink_recipe
from gskd_mm.utils import register_all_modules

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(__file__)), 'configs', 'gskd')
RECIPES = sorted(glob.glob(osp.join(CONFIG_DIR, '*.py')))
METHODS = ('gskd', 'dist', 'dist-gskd', 'cwd', 'cwd-gskd')
DATASETS = ('cityscapes', 'ade20k', 'voc12aug')
PAIRS = ('deeplabv3_r101-d8_deeplabv3_r18-d8',
         'deeplabv3_r101-d8_mobilenet-v2-d8_deeplabv3',
         'pspnet_r101-d8_pspnet_r18-d8')

register_all_modules(init_default_scope=False)


def test_every_method_pair_and_dataset_has_a_recipe():
    names = [osp.basename(p) for p in RECIPES]
    for method in METHODS:
        for pair in PAIRS:
            for dataset in DATASETS:
                found = [
                    n for n in names if n.startswith(f'{method}_{pair}_')
                    and f'_{dataset}-' in n
                ]
                assert len(found) == 1, (method, pair, dataset, found)


@pytest.mark.parametrize('path', RECIPES, ids=osp.basename)
def test_recipe_trains_one_step(path):
    torch.manual_seed(0)
    cfg = shrink_recipe(Config.fromfile(path))
    # Random labels rarely match an untrained teacher: sample every
    # labelled pixel so that GSKD has points and its projector a gradient.
    for losses_cfg in cfg.model.distiller.distill_losses.values():
        if losses_cfg.type == 'GSKDLoss':
            losses_cfg.valid_mask = 'labeled'
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(cfg.model)
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    projector_before = {
        name: p.detach().clone()
        for name, p in model.distiller.named_parameters()
    }
    batch = random_seg_batch(2, (64, 64), num_classes_of(cfg))
    losses = model.train_step(batch, optim)

    distill_terms = {k for k in losses if k.startswith('distill.')}
    expected = set(cfg.model.distiller.distill_losses)
    assert distill_terms == {f'distill.{k}' for k in expected}
    assert all(torch.isfinite(v) for v in losses.values())
    # Every recorder saw its layer during the step.
    for side, manager in (('student', model.distiller.student_recorders),
                          ('teacher', model.distiller.teacher_recorders)):
        for name, recorder in manager.recorders.items():
            assert recorder.data_buffer, f'{side} recorder {name} is empty'
    # Connectors are trained with the student.
    for name, before in projector_before.items():
        after = dict(model.distiller.named_parameters())[name]
        if after.requires_grad and after.dim() > 1:
            assert not torch.equal(before, after), name


def test_misspelled_recorder_source_fails():
    path = next(p for p in RECIPES if osp.basename(p).startswith('gskd_'))
    cfg = Config.fromfile(path)
    cfg.model.distiller.teacher_recorders.feat.source = \
        'decode_head.bottelneck'
    shrink_recipe(cfg)
    init_default_scope('mmseg')
    with pytest.raises(AssertionError, match='bottelneck'):
        MODELS.build(cfg.model)


@pytest.mark.parametrize(
    'path',
    sorted(glob.glob(osp.join(CONFIG_DIR, '_base_', 'teachers', '*.py'))),
    ids=osp.basename)
def test_teacher_checkpoint_is_the_mmseg_model_zoo_one(path):
    cfg = Config.fromfile(path)
    zoo = get_config(cfg.teacher.cfg_path, pretrained=True)
    assert cfg.teacher_ckpt == zoo.model_path
