# Copyright (c) gskd-mm contributors. All rights reserved.
"""Every recipe loads, builds, trains one step, and records real layers.

Every recipe is checked statically here; the one-step training of every
recipe is ``slow`` but for one representative recipe per method base and
per algorithm (``REPRESENTATIVES``), which the fast tier trains.
"""
import copy
import glob
import os.path as osp
import re
import shutil

import pytest
import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import init_default_scope
from mmrazor.registry import MODELS

from gskd_mm.testing import generated_batch

from helpers import (load_config, num_classes_of, shrink_recipe,
                     train_one_step, zoo_config)


CONFIG_DIR = osp.join(osp.dirname(osp.dirname(__file__)), 'configs', 'gskd')
RECIPES = sorted(glob.glob(osp.join(CONFIG_DIR, '*.py')))
METHODS = ('gskd', 'dist', 'dist-gskd', 'cwd', 'cwd-gskd', 'cirkd',
           'cirkd-gskd')
DATASETS = ('cityscapes', 'ade20k', 'voc12aug')
PAIRS = ('deeplabv3_r101-d8_deeplabv3_r18-d8',
         'deeplabv3_r101-d8_mobilenet-v2-d8_deeplabv3',
         'pspnet_r101-d8_pspnet_r18-d8')

# Pairs across architectures and strides, and more datasets: DIST, CWD and
# their GSKD recipes.
NEW_METHODS = ('dist', 'dist-gskd', 'cwd', 'cwd-gskd')
NEW_PAIRS = {
    'segformer_mit-b4_segformer_mit-b0': ('cityscapes', 'ade20k'),
    'segformer_mit-b4_deeplabv3_r18-d8': ('cityscapes', ),
    'deeplabv3_r101-d8_segformer_mit-b0': ('cityscapes', ),
    'deeplabv3_r101-d8_deeplabv3_r18-d8': ('coco-stuff164k', ),
}
TEACHERS = sorted(
    glob.glob(osp.join(CONFIG_DIR, '_base_', 'teachers', '*.py')))
METHOD_BASES = sorted(
    osp.splitext(osp.basename(p))[0]
    for p in glob.glob(osp.join(CONFIG_DIR, '_base_', 'methods', '*.py')))

# The recipes the fast tier trains a step of: one per method base, which
# together cover every algorithm, over pairs and datasets (cheap CNN pairs:
# a SegFormer MiT-B4 teacher alone costs seconds to build).
REPRESENTATIVES = {
    'gskd': 'gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
    '4xb4-40k_cityscapes-512x1024.py',
    'dist': 'dist_deeplabv3_r101-d8_mobilenet-v2-d8_deeplabv3_'
    '4xb4-40k_voc12aug-512x512.py',
    'dist_aux': 'dist_pspnet_r101-d8_pspnet_r18-d8_4xb4-80k_ade20k-512x512.py',
    'dist_gskd': 'dist-gskd_deeplabv3_r101-d8_mobilenet-v2-d8_deeplabv3_'
    '4xb4-40k_voc12aug-512x512.py',
    'dist_gskd_aux': 'dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
    '4xb4-40k_cityscapes-512x1024.py',
    'cwd': 'cwd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
    '4xb4-80k_coco-stuff164k-512x512.py',
    'cwd_gskd': 'cwd-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
    '4xb2-80k_cityscapes-512x1024.py',
    'cirkd': 'cirkd_pspnet_r101-d8_pspnet_r18-d8_'
    '4xb4-40k_cityscapes-512x1024.py',
    'cirkd_gskd': 'cirkd-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
    '4xb4-80k_ade20k-512x512.py',
    'dist_gskd_row_t1_aux': 'dist-gskd-row-t1_deeplabv3_r101-d8_'
    'deeplabv3_r18-d8_4xb4-40k_cityscapes-512x1024.py',
    'dist_gskd_row_t1_bal_aux': 'dist-gskd-row-t1-bal_deeplabv3_r101-d8_'
    'deeplabv3_r18-d8_4xb4-40k_cityscapes-512x1024.py',
    'cwd_gskd_row_t1_bal': 'cwd-gskd-row-t1-bal_deeplabv3_r101-d8_'
    'deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    'cirkd_gskd_row_t1_bal': 'cirkd-gskd-row-t1-bal_deeplabv3_r101-d8_'
    'deeplabv3_r18-d8_4xb4-40k_cityscapes-512x1024.py',
}
# The student alone (an MMSeg segmentor, as the step benchmark's baseline
# trains it) of an adversarial recipe: its optimizer is one of two.
STUDENT_REPRESENTATIVE = REPRESENTATIVES['cwd_gskd']


def method_base(path: str) -> str:
    """The method base a recipe names in its ``_base_`` list."""
    with open(path) as f:
        (base, ) = re.findall(r"'\./_base_/methods/(\w+)\.py'", f.read())
    return base


def algorithm(path: str) -> str:
    """The algorithm a recipe writes as its ``model.type``."""
    with open(path) as f:
        (kind, ) = re.findall(r"^    type='(\w+)',$", f.read(), re.M)
    return kind


def one_step_param(path: str):
    """A recipe as a parameter: ``slow`` unless it is a representative."""
    fast = osp.basename(path) in REPRESENTATIVES.values()
    return pytest.param(path, marks=() if fast else pytest.mark.slow)


def test_representatives_cover_every_method_base_and_algorithm():
    assert set(REPRESENTATIVES) == set(METHOD_BASES) == {
        method_base(p) for p in RECIPES
    }, 'give every method base a representative in REPRESENTATIVES'
    paths = [osp.join(CONFIG_DIR, n) for n in REPRESENTATIVES.values()]
    assert [method_base(p) for p in paths] == list(REPRESENTATIVES)
    assert {algorithm(p) for p in paths} == {
        algorithm(p) for p in RECIPES
    }, 'a new algorithm needs a representative recipe'


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


def test_every_new_pair_and_dataset_has_its_recipes():
    names = [osp.basename(p) for p in RECIPES]
    for pair, datasets in NEW_PAIRS.items():
        for method in NEW_METHODS:
            for dataset in datasets:
                found = [
                    n for n in names if n.startswith(f'{method}_{pair}_')
                    and f'_{dataset}-' in n
                ]
                assert len(found) == 1, (method, pair, dataset, found)


@pytest.mark.parametrize('path', RECIPES, ids=osp.basename)
def test_recipe_widths_come_from_its_bases(path):
    """No recipe writes a width: swapping a base is the only edit."""
    with open(path) as f:
        text = f.read()
    assert not re.search(r'(in|out)_channels?=\d', text), path
    cfg = load_config(path)
    assert cfg.model.type == algorithm(path)  # what REPRESENTATIVES covers
    for name, connector in cfg.model.distiller.get('connectors', {}).items():
        assert connector.get('in_channels', connector.get('in_channel')) \
            == cfg.model.architecture.decode_head.channels, name
        assert connector.get('out_channels', connector.get('out_channel')) \
            == cfg.teacher_channels, name


@pytest.mark.parametrize('path', RECIPES, ids=osp.basename)
def test_recipe_resumes_exactly(path):
    """ExactResumeHook and AtomicCheckpointHook in every recipe's
    default_hooks (distill_pieces.py's resume_hooks), which a config's own
    custom_hooks cannot drop; a balanced recipe's balancer stays first
    (custom_hooks.0 in the fidelity table)."""
    cfg = load_config(path)
    assert cfg.default_hooks.exact_resume.type == 'ExactResumeHook'
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert cfg.default_hooks.checkpoint.interval > 0  # the schedule's
    hooks = [h['type'] for h in cfg.custom_hooks]
    if '-bal_' in osp.basename(path):
        assert hooks == ['GradientShareBalancerHook']


@pytest.mark.parametrize('path', TEACHERS, ids=osp.basename)
def test_teacher_channels_is_the_teacher_head_width(path):
    cfg = load_config(path)
    zoo = zoo_config(cfg.teacher.cfg_path)
    assert cfg.teacher_channels == zoo.model.decode_head.channels


SWAP_RECIPE = ('cwd-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
               '4xb2-80k_cityscapes-512x1024.py')
STUDENTS = {
    'deeplabv3-r18':
    'mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    'deeplabv3-mobilenetv2': 'mmseg::mobilenet_v2/'
    'mobilenet-v2-d8_deeplabv3_4xb2-80k_cityscapes-512x1024.py',
    'pspnet-r18':
    'mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    'segformer-mit-b0':
    'mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py',
}


# The fast tier swaps in the student of another architecture and stride.
@pytest.mark.parametrize(
    'student', [
        pytest.param(
            config,
            marks=() if name == 'segformer-mit-b0' else pytest.mark.slow)
        for name, config in STUDENTS.items()
    ],
    ids=STUDENTS.keys())
def test_student_swaps_by_one_line(student, tmp_path):
    """Replace the recipe's first ``_base_`` line and train a step.

    The recipe is copied with the ``_base_`` folder it refers to; only the
    student line differs. Projector widths follow the new student's head
    (128, 512, 128 and 256 channels), and SegFormer's stride-4 head meets
    the teacher's stride-8 one.
    """
    shutil.copytree(
        osp.join(CONFIG_DIR, '_base_'), str(tmp_path / '_base_'))
    with open(osp.join(CONFIG_DIR, SWAP_RECIPE)) as f:
        lines = f.read().split('\n')
    (index, ) = [i for i, line in enumerate(lines) if line.startswith(
        "    'mmseg::")]
    swapped = lines.copy()
    swapped[index] = f"    '{student}',"
    assert sum(a != b for a, b in zip(lines, swapped)) <= 1
    path = tmp_path / SWAP_RECIPE
    path.write_text('\n'.join(swapped))

    cfg = Config.fromfile(str(path))
    head = get_config(student).model.decode_head
    assert cfg.model.architecture.decode_head.type == head.type
    for connector in cfg.model.distiller.connectors.values():
        assert connector.get('in_channels',
                             connector.get('in_channel')) == head.channels
    torch.manual_seed(0)
    model, losses = train_one_step(shrink_recipe(cfg))
    assert {k for k in losses if k.startswith('distill.')} == {
        'distill.loss_kd', 'distill.loss_cwd_feat', 'distill.loss_cwd_logits',
        'distill.loss_adv_g', 'distill.loss_adv_d', 'distill.loss_gskd'
    }
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['distill.loss_cwd_feat'] > 0


def recorded(manager, name: str) -> torch.Tensor:
    """The tensor a recorder holds (a module's first input or output)."""
    data = manager.recorders[name].data_buffer[0]
    return data[0] if isinstance(data, tuple) else data


@pytest.mark.parametrize(
    'name, last_layer',
    [('cwd-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
      '4xb2-80k_cityscapes-512x1024.py', dict(student='bottleneck',
                                              teacher='bottleneck')),
     ('cwd-gskd_pspnet_r101-d8_pspnet_r18-d8_'
      '4xb2-80k_cityscapes-512x1024.py', dict(student='bottleneck',
                                              teacher='bottleneck')),
     ('cwd-gskd_segformer_mit-b4_deeplabv3_r18-d8_'
      '4xb2-80k_cityscapes-512x1024.py', dict(student='bottleneck',
                                              teacher='fusion_conv'))],
    ids=('deeplabv3', 'pspnet', 'segformer-teacher'))
def test_features_are_the_classifier_input(name, last_layer):
    """Recorded features: the head's last layer, after its dropout.

    The teacher (eval mode) gives exactly its last layer's output, as the
    ``decode_head.bottleneck`` recorders of earlier versions did; the
    student's in training are that output after its ``Dropout2d``: each
    channel of an image either zero or scaled by ``1 / (1 - p)``. A
    SegFormer teacher's features are twice the size of a d8 student's.
    """
    cfg = shrink_recipe(Config.fromfile(osp.join(CONFIG_DIR, name)))
    outputs = {}

    def keep(side):
        def hook(module, inputs, output):
            outputs[side] = output
        return hook

    torch.manual_seed(0)
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    for side, network in (('student', model.architecture),
                          ('teacher', model.teacher)):
        getattr(network.decode_head,
                last_layer[side]).register_forward_hook(keep(side))
    model.train()
    optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    model.train_step(generated_batch(2, (64, 64), 19), optim)

    teacher = recorded(model.distiller.teacher_recorders, 'feat')
    assert torch.equal(teacher, outputs['teacher'])
    student = recorded(model.distiller.student_recorders, 'feat')
    p = model.architecture.decode_head.dropout.p
    kept = student.flatten(2).abs().sum(2) > 0  # (N, C)
    assert kept.float().mean() < 1  # some channels dropped
    torch.testing.assert_close(
        student[kept], outputs['student'][kept] / (1 - p))
    if 'segformer' in name:
        assert teacher.shape[-2:] == tuple(
            2 * s for s in student.shape[-2:])


@pytest.mark.parametrize(
    'path', [one_step_param(p) for p in RECIPES], ids=osp.basename)
def test_recipe_trains_one_step(path):
    torch.manual_seed(0)
    cfg = shrink_recipe(load_config(path))
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
    batch = generated_batch(2, (64, 64), num_classes_of(cfg))
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


def test_student_alone_trains_one_step():
    """The recipe's student as an MMSeg segmentor, with its optimizer."""
    torch.manual_seed(0)
    cfg = shrink_recipe(
        load_config(osp.join(CONFIG_DIR, STUDENT_REPRESENTATIVE)))
    init_default_scope('mmseg')
    student = MODELS.build(cfg.model.architecture)
    student.train()
    assert type(student).__name__ == 'EncoderDecoder'
    # An adversarial recipe has two optimizers; the student's is the first.
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    optim = build_optim_wrapper(student, optim_cfg.get('architecture',
                                                       optim_cfg))
    before = student.decode_head.conv_seg.weight.detach().clone()
    losses = student.train_step(
        generated_batch(2, (64, 64), num_classes_of(cfg)), optim)
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    assert not any(k.startswith('distill.') for k in losses)
    assert all(torch.isfinite(v) for v in losses.values())
    assert not torch.equal(before, student.decode_head.conv_seg.weight)


# Queue sizes per class: the authors' for Cityscapes (and VOC, whose class
# count is close); for ADE20K, Cityscapes' total spread over 150 classes.
MEMORY_SIZES = dict(
    cityscapes=(20000, 2000), ade20k=(2500, 250), voc12aug=(20000, 2000))


@pytest.mark.parametrize(
    'path', [p for p in RECIPES if osp.basename(p).startswith('cirkd')],
    ids=osp.basename)
def test_cirkd_memory_fits_the_dataset_and_teacher(path):
    cfg = load_config(path)
    losses = cfg.model.distiller.distill_losses
    dataset = next(d for d in DATASETS if f'_{d}-' in osp.basename(path))
    for name, size in zip(('loss_memory_p2p', 'loss_memory_p2r'),
                          MEMORY_SIZES[dataset]):
        assert losses[name].num_classes == num_classes_of(cfg), name
        assert losses[name].memory_size == size, name
        # The keys are teacher features: the teacher head's width.
        assert losses[name].channels == cfg.model.teacher.get(
            'decode_head', zoo_config(cfg.model.teacher.cfg_path).model
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
    elif osp.basename(path).startswith('cirkd-gskd-row-t1-bal_'):
        # The authors' CIRKD + GSKD with GSKD-row-t1 (weight moved by the
        # balancer from 6.0).
        assert weights == dict(
            loss_kd=1.0, loss_minibatch_p2p=1.0, loss_memory_p2p=0.01,
            loss_memory_p2r=0.01, loss_gskd=6.0)
        assert losses.loss_gskd.tau == 1.0
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
    cfg = load_config(path)
    zoo = zoo_config(cfg.teacher.cfg_path, pretrained=True)
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
        model.train_step(generated_batch(2, (64, 64), 21), optim)
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
