# Copyright (c) gskd-mm contributors. All rights reserved.
"""Every recipe loads, builds, trains one step, and records real layers."""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import init_default_scope
from mmrazor.registry import MODELS

from gskd_mm.testing import num_classes_of, random_seg_batch, shrink_recipe
from gskd_mm.utils import register_all_modules

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(__file__)), 'configs', 'gskd')
RECIPES = sorted(glob.glob(osp.join(CONFIG_DIR, '*.py')))
METHODS = ('gskd', 'dist', 'dist-gskd', 'cwd', 'cwd-gskd', 'cirkd',
           'cirkd-gskd')
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
    # The recipe's own optimizers (two with adversarial distillation).
    optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    projector_before = {
        name: p.detach().clone()
        for name, p in model.distiller.named_parameters()
    }
    batch = random_seg_batch(2, (64, 64), num_classes_of(cfg))
    losses = model.train_step(batch, optim)

    distill_terms = {k for k in losses if k.startswith('distill.')}
    expected = {f'distill.{k}' for k in cfg.model.distiller.distill_losses}
    if 'discriminator' in cfg.model:
        expected |= {'distill.loss_adv_g', 'distill.loss_adv_d'}
    assert distill_terms == expected
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


# Queue sizes per class: the authors' for Cityscapes (and VOC, whose class
# count is close); for ADE20K, Cityscapes' total spread over 150 classes.
MEMORY_SIZES = dict(
    cityscapes=(20000, 2000), ade20k=(2500, 250), voc12aug=(20000, 2000))


@pytest.mark.parametrize(
    'path', [p for p in RECIPES if osp.basename(p).startswith('cirkd')],
    ids=osp.basename)
def test_cirkd_memory_fits_the_dataset_and_teacher(path):
    cfg = Config.fromfile(path)
    losses = cfg.model.distiller.distill_losses
    dataset = next(d for d in DATASETS if f'_{d}-' in osp.basename(path))
    for name, size in zip(('loss_memory_p2p', 'loss_memory_p2r'),
                          MEMORY_SIZES[dataset]):
        assert losses[name].num_classes == num_classes_of(cfg), name
        assert losses[name].memory_size == size, name
        # The keys are teacher features: the teacher head's width.
        assert losses[name].channels == cfg.model.teacher.get(
            'decode_head', get_config(cfg.model.teacher.cfg_path).model
            .decode_head).channels, name
    projector = cfg.model.distiller.connectors.cirkd_projector
    assert projector.out_channels == losses.loss_memory_p2p.channels
    assert projector.in_channels == \
        cfg.model.architecture.decode_head.channels
    weights = {k: v.loss_weight for k, v in losses.items()}
    if osp.basename(path).startswith('cirkd-gskd_'):
        assert weights == dict(
            loss_kd=1.0, loss_minibatch_p2p=1.0, loss_memory_p2p=0.01,
            loss_memory_p2r=0.01, loss_gskd=5.0)
        assert losses.loss_gskd.tau == 4.0
        assert losses.loss_gskd.num_samples == 8
    else:
        assert weights == dict(
            loss_kd=1.0, loss_minibatch_p2p=1.0, loss_memory_p2p=0.1,
            loss_memory_p2r=0.1)


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


def test_cirkd_queues_go_into_checkpoints_and_come_back(tmp_path):
    """What ``--resume`` relies on: the queues are in the state dict."""
    from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
    path = next(p for p in RECIPES
                if osp.basename(p).startswith('cirkd-gskd_')
                and '_voc12aug-' in p)
    cfg = shrink_recipe(Config.fromfile(path))
    losses = cfg.model.distiller.distill_losses
    losses.loss_memory_p2p.memory_size = 50  # small queues, small files
    losses.loss_memory_p2r.memory_size = 5
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    for _ in range(2):
        model.train_step(random_seg_batch(2, (64, 64), 21), optim)
    queues = {
        k: v.clone()
        for k, v in model.state_dict().items() if '.queue' in k
    }
    assert sorted(queues) == [
        f'distiller.distill_losses.{name}.{buffer}'
        for name in ('loss_memory_p2p', 'loss_memory_p2r')
        for buffer in ('queue', 'queue_ptr')
    ]
    assert all(v.sum() > 0 for k, v in queues.items() if k.endswith('ptr'))
    save_checkpoint(model.state_dict(), str(tmp_path / 'iter_2.pth'))

    losses.loss_memory_p2p.init_seed = losses.loss_memory_p2r.init_seed = 1
    fresh = MODELS.build(cfg.model)
    assert not torch.equal(
        fresh.distiller.distill_losses.loss_memory_p2p.queue,
        queues['distiller.distill_losses.loss_memory_p2p.queue'])
    load_checkpoint(fresh, str(tmp_path / 'iter_2.pth'), strict=True)
    for key, value in fresh.state_dict().items():
        if key in queues:
            assert torch.equal(value, queues[key]), key
