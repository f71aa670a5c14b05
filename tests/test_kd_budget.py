# Copyright (c) gskd-mm contributors. All rights reserved.
"""tools/analysis_tools/kd_budget.py and gskd_mm.analysis.budget.

* FLOPs: the counts and ratio of a small recipe equal a hand count (the
  teacher's auxiliary heads counted as its algorithm runs them);
* the iterations a budget buys, by each basis;
* the student-only config of a recipe: the student alone, its optimizer and
  scaled schedule, no distillation piece, other hooks kept;
* the written config trains under ``tools/train.py`` (with the
  paper-comparable evaluation of the docs) and ``mim train mmseg``, as a
  plain segmentor with its own losses;
* the compute-matched table of configs/gskd/README.md is what the tool
  computes, one row per teacher / student pair.
"""
import glob
import json
import os.path as osp
import re
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModule
from mmseg.registry import MODELS as SEG_MODELS

from gskd_mm.analysis import (KDBudget, RecipeFlops, offline_recipe,
                              recipe_flops, student_only_config)
from gskd_mm.analysis.budget import ITERS_MULTIPLE
from gskd_mm.analysis.step_cost import StepCost, matched_iters
from gskd_mm.engine import LossGradientHook
from gskd_mm.testing import make_cityscapes
from gskd_mm.utils import register_all_modules

from helpers import load_config, run_with_deadline

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(REPO, 'configs', 'gskd')
README = osp.join(CONFIG_DIR, 'README.md')
TRAIN_TEST_DOC = osp.join(REPO, 'docs', 'en', 'user_guides', 'train_test.md')
TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'kd_budget.py')
TRAIN_PY = osp.join(REPO, 'tools', 'train.py')
MIM = osp.join(osp.dirname(sys.executable), 'mim')
TIMEOUT = 900  # seconds, per subprocess
# Adversarial (two optimizers, a DDP wrapper, a per-part schedule) and
# balanced (a distillation hook): everything the baseline must drop.
BALANCED_CWD = ('cwd-gskd-row-t1-bal_deeplabv3_r101-d8_deeplabv3_r18-d8_'
                '4xb2-80k_cityscapes-512x1024.py')
# A warm-up before the poly decay: two schedulers to scale.
SEGFORMER = ('dist-gskd_deeplabv3_r101-d8_segformer_mit-b0_'
             '8xb1-160k_cityscapes-1024x1024.py')
# The paper-comparable evaluation of the docs, at this test's interval.
PAPER_EVAL = ('default_hooks.checkpoint.save_best=mIoU '
              'default_hooks.checkpoint.rule=greater')
STUDENT_LOSSES = {
    'decode.loss_ce', 'decode.acc_seg', 'aux.loss_ce', 'aux.acc_seg'
}


# ------------------------------------------------------------ FLOPs
@SEG_MODELS.register_module(force=True)
class OneConvBackbone(BaseModule):
    """A 3x3 conv from RGB to ``width`` channels, no bias: 27 x width
    multiply-adds per pixel."""

    def __init__(self, width: int, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.conv = torch.nn.Conv2d(3, width, 3, padding=1, bias=False)

    def forward(self, x):
        return (self.conv(x), )


def one_conv_segmentor(width: int, auxiliary: bool) -> dict:
    """Backbone, and heads that are one 1x1 conv to 3 classes each
    (``FCNHead`` without convs): width x 3 multiply-adds per pixel."""
    head = dict(type='FCNHead',
                in_channels=width,
                channels=width,
                num_convs=0,
                concat_input=False,
                num_classes=3,
                loss_decode=dict(type='CrossEntropyLoss'))
    model = dict(_scope_='mmseg',
                 type='EncoderDecoder',
                 data_preprocessor=dict(type='SegDataPreProcessor',
                                        size=(8, 8)),
                 backbone=dict(type='OneConvBackbone', width=width),
                 decode_head=head)
    if auxiliary:
        model['auxiliary_head'] = head
    return model


def one_conv_recipe(algorithm: str, teacher_auxiliary: bool) -> Config:
    model = dict(_scope_='mmrazor',
                 type=algorithm,
                 architecture=one_conv_segmentor(4, auxiliary=True),
                 teacher=one_conv_segmentor(16, auxiliary=True),
                 distiller=dict(type='ConfigurableDistiller'))
    if algorithm == 'EvalTeacherDistill':
        model['teacher_auxiliary'] = teacher_auxiliary
    return Config(dict(default_scope='mmseg', model=model))


@pytest.mark.parametrize(
    'algorithm, teacher_auxiliary, teacher_heads',
    [
        ('EvalTeacherDistill', False, 1),
        ('EvalTeacherDistill', True, 2),
        ('SingleTeacherDistill', False, 2),  # loss mode: all heads
    ])
def test_flops_equal_a_hand_count(algorithm, teacher_auxiliary, teacher_heads):
    register_all_modules(init_default_scope=False)
    pixels = 8 * 8
    flops = recipe_flops(one_conv_recipe(algorithm, teacher_auxiliary),
                         crop=(8, 8))
    teacher = (27 * 16 + teacher_heads * 16 * 3) * pixels
    student = (27 * 4 + 2 * 4 * 3) * pixels  # decode and auxiliary heads
    assert (flops.teacher, flops.student) == (teacher, student)
    assert flops.ratio == pytest.approx(teacher / student)
    assert flops.step_ratio == pytest.approx(1 + teacher / (3 * student))


def test_flops_are_cached_per_network_and_crop():
    register_all_modules(init_default_scope=False)
    cache = {}
    first = recipe_flops(one_conv_recipe('EvalTeacherDistill', False), (8, 8),
                         cache)
    assert len(cache) == 2
    cache.update({key: 1.0 for key in cache})  # a hit returns the cache
    again = recipe_flops(one_conv_recipe('EvalTeacherDistill', False), (8, 8),
                         cache)
    assert (again.teacher, again.student) == (1.0, 1.0) != (first.teacher,
                                                            first.student)
    recipe_flops(one_conv_recipe('EvalTeacherDistill', True), (8, 8), cache)
    recipe_flops(one_conv_recipe('EvalTeacherDistill', False), (16, 8), cache)
    assert len(cache) == 5  # another teacher count; both at another crop


# ------------------------------------------------------- iterations
def test_iterations_by_each_basis():
    budget = KDBudget(40000, RecipeFlops(5.8e9, 1e9, (512, 1024)),
                      StepCost(2.5, 2.4, 2.6, 5))
    assert budget.step_ratio == 2.5
    assert budget.student_iters('time') == 100000
    assert budget.student_iters('flops') == matched_iters(
        40000, 1 + 5.8 / 3, ITERS_MULTIPLE)
    assert budget.student_iters('flops') == 117300  # 117333, to 100
    assert budget.student_iters('iters') == 40000
    untimed = KDBudget(40000, RecipeFlops(5.8e9, 1e9, (512, 1024)))
    assert untimed.step_ratio is None
    with pytest.raises(ValueError, match="by='flops'"):
        untimed.student_iters('time')
    with pytest.raises(ValueError, match='one of'):
        untimed.student_iters('seconds')
    assert matched_iters(4, 1.2, ITERS_MULTIPLE) == 100  # one multiple


# ------------------------------------------------ the student alone
def test_student_only_config_drops_every_distillation_piece():
    cfg = load_config(osp.join(CONFIG_DIR, BALANCED_CWD))
    cfg.custom_hooks.append(dict(type='EMAHook', momentum=0.001))
    matched = student_only_config(cfg, 100000, (LossGradientHook, ))
    assert matched.model == cfg.model.architecture
    assert matched.model.data_preprocessor.size == (512, 1024)
    # The student's optimizer; no discriminator, DDP wrapper or balancer.
    assert matched.optim_wrapper == cfg.optim_wrapper.architecture
    assert 'model_wrapper_cfg' not in matched
    # Every other hook stays (the recipes may carry more than the balancer).
    balancer = [
        h for h in cfg.custom_hooks if h['type'] == 'GradientShareBalancerHook'
    ]
    assert len(balancer) == 1
    assert matched.custom_hooks == [
        h for h in cfg.custom_hooks if h not in balancer
    ]
    assert matched.custom_hooks[-1] == dict(type='EMAHook', momentum=0.001)
    text = matched.pretty_text
    for piece in ('teacher', 'distill', 'discriminator', 'Adversarial',
                  'recorder', 'protocol_', 'GradientShareBalancerHook'):
        assert piece not in text, piece
    # The schedule keeps its shape: the poly decay ends at the new end.
    assert matched.train_cfg.max_iters == 100000
    (poly, ) = matched.param_scheduler
    assert poly == dict(cfg.param_scheduler.architecture[0], end=100000)
    # Data, evaluation and runtime are the recipe's.
    for key in ('train_dataloader', 'val_dataloader', 'val_evaluator',
                'default_hooks', 'env_cfg', 'default_scope', 'custom_imports',
                'test_pipeline'):
        assert matched[key] == cfg[key], key
    assert cfg.model.type == 'AdversarialEvalTeacherDistill'  # unchanged


def test_student_only_config_scales_a_warm_up():
    cfg = load_config(osp.join(CONFIG_DIR, SEGFORMER))
    warmup, poly = cfg.param_scheduler
    assert (warmup.end, poly.begin, poly.end) == (1500, 1500, 160000)
    matched = student_only_config(cfg, 320000, (LossGradientHook, ))
    warmup, poly = matched.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 3000)
    assert (poly.begin, poly.end) == (3000, 320000)
    assert matched.optim_wrapper == cfg.optim_wrapper


def test_student_only_config_refuses_what_it_cannot_scale():
    cfg = load_config(osp.join(CONFIG_DIR, SEGFORMER))
    plain = student_only_config(cfg, 1000, ())
    with pytest.raises(ValueError, match='model.architecture'):
        student_only_config(plain, 1000, ())
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=10)
    with pytest.raises(ValueError, match='iteration-based'):
        student_only_config(cfg, 1000, ())
    cfg = load_config(osp.join(CONFIG_DIR, SEGFORMER))
    cfg.custom_hooks = [dict(type='NoSuchHook')]
    with pytest.raises(KeyError, match='NoSuchHook'):
        student_only_config(cfg, 1000, ())


# ------------------------------------------------ the written config
@pytest.fixture(scope='module')
def baseline(tmp_path_factory) -> str:
    """The tool's baseline of the balanced CWD recipe, by FLOPs at a small
    crop, shrunk to run on the CPU on generated Cityscapes data."""
    tmp = tmp_path_factory.mktemp('baseline')
    written = str(tmp / 'written.py')
    result = run_with_deadline([
        TOOL,
        osp.join(CONFIG_DIR, BALANCED_CWD), '--by', 'flops', '--crop', '64',
        '64', '--out', written
    ],
                               TIMEOUT,
                               python=True,
                               cwd=REPO)
    assert result.returncode == 0, result.stdout[-4000:]
    iters = int(
        re.search(r'student alone for (\d+) iterations',
                  result.stdout).group(1))
    assert iters > 80000  # a teacher forward costs more than nothing
    cfg = Config.fromfile(written)
    with open(written) as f:
        header = ' '.join(line[2:].strip() for line in f
                          if line.startswith('# '))
    assert f'{BALANCED_CWD} trained alone' in header
    assert f'for {iters} iterations: the recipe\'s 80000 x' in header
    assert cfg.train_cfg.max_iters == iters
    assert cfg.param_scheduler[0].end == iters
    assert cfg.model.type == 'EncoderDecoder'
    assert 'GradientShareBalancerHook' not in str(cfg.custom_hooks)
    root = make_cityscapes(str(tmp / 'cityscapes'))
    offline_recipe(cfg, (64, 64), root)
    path = str(tmp / 'baseline.py')
    cfg.dump(path)
    return path


def schedule(iters: int, interval: int) -> list:
    return [
        'train_dataloader.batch_size=2', f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={interval}',
        f'default_hooks.checkpoint.interval={iters}',
        'default_hooks.logger.interval=1'
    ]


def check_plain_student_run(work_dir: str, iters: int) -> None:
    """The run trained the student alone, on its own losses."""
    (scalars, ) = glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json'))
    with open(scalars) as f:
        records = [json.loads(line) for line in f if line.strip()]
    train = [r for r in records if 'loss' in r]
    assert [r['step'] for r in train] == list(range(1, iters + 1))
    for record in train:
        losses = {k for k in record if 'loss' in k or 'acc' in k} - {'loss'}
        assert losses == STUDENT_LOSSES, record
    assert any('mIoU' in r for r in records)  # validated at the end
    state = torch.load(osp.join(work_dir, f'iter_{iters}.pth'),
                       weights_only=True)['state_dict']
    assert {k.split('.')[0]
            for k in state} == {'backbone', 'decode_head', 'auxiliary_head'}


@pytest.mark.slow
def test_baseline_trains_with_tools_train_and_keeps_the_best(
        baseline, tmp_path):
    """``tools/train.py``, with the paper-comparable evaluation of the
    docs: validation every iteration here, the best checkpoint kept."""
    with open(TRAIN_TEST_DOC) as f:
        assert PAPER_EVAL in f.read()  # the docs' option, as tested here
    work_dir = str(tmp_path / 'work')
    result = run_with_deadline(
        [TRAIN_PY, baseline, '--work-dir', work_dir, '--cfg-options'] +
        schedule(3, 1) + PAPER_EVAL.split(),
        TIMEOUT,
        python=True,
        cwd=REPO)
    assert result.returncode == 0, result.stdout[-6000:]
    check_plain_student_run(work_dir, 3)
    (best, ) = glob.glob(osp.join(work_dir, 'best_mIoU_iter_*.pth'))
    assert 1 <= int(re.search(r'iter_(\d+)', best).group(1)) <= 3


@pytest.mark.slow
def test_baseline_trains_with_mim_train_mmseg(baseline, tmp_path):
    assert osp.isfile(MIM), MIM
    work_dir = str(tmp_path / 'work')
    result = run_with_deadline([
        MIM, 'train', 'mmseg', baseline, '--gpus', '0', '--launcher', 'none',
        '--work-dir', work_dir, '--cfg-options'
    ] + schedule(2, 2),
                               TIMEOUT,
                               cwd=REPO)
    assert result.returncode == 0, result.stdout[-6000:]
    check_plain_student_run(work_dir, 2)


# ------------------------------------------------ the README's table
def readme_pairs() -> list:
    """One Cityscapes recipe per teacher / student pair (the first)."""
    found = {}
    for path in sorted(glob.glob(osp.join(CONFIG_DIR, '*_cityscapes-*.py'))):
        pair = '_'.join(osp.basename(path).split('_')[1:-2])
        found.setdefault(pair, osp.relpath(path, REPO))
    return sorted(found.values())


@pytest.mark.slow
def test_readme_table_is_the_tools():
    configs = readme_pairs()
    assert len(configs) == 6, configs
    result = run_with_deadline([TOOL, *configs, '--by', 'flops', '--markdown'],
                               TIMEOUT * 2,
                               python=True,
                               cwd=REPO)
    assert result.returncode == 0, result.stdout[-4000:]
    rows = [
        line for line in result.stdout.splitlines()
        if line.startswith('| ') and '.py' in line
    ]
    assert len(rows) == len(configs)
    with open(README) as f:
        readme = f.read()
    for row in rows:
        assert row in readme, f'configs/gskd/README.md lacks:\n{row}'
    section = readme.split('\n## Compute-matched baselines\n', 1)[1]
    table = [
        line for line in section.split('\n## ', 1)[0].splitlines()
        if line.startswith('| ') and '.py' in line
    ]
    cityscapes = glob.glob(osp.join(CONFIG_DIR, '*_cityscapes-*.py'))
    assert len(table) == len(cityscapes)


# ------------------------------------------------------------ cached recipes
CACHED_DIST = osp.join(
    CONFIG_DIR, 'teacher_cache',
    'dist-cache_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb4-40k_'
    'cityscapes-512x1024.py')
STORAGE_RESULTS = osp.join(REPO, 'results', 'teacher_cache_storage.json')


def test_cached_recipe_budget_equals_a_hand_count():
    """The dense cache of the Cityscapes DIST recipe: 3 scales (0.5, 1, 2
    of 1024 x 2048) x 2 flips of two recorders of stride 8, against the
    online run's 40k x 4 GPUs x 4 images."""
    from gskd_mm.teacher_cache.budget import cached_recipe_budget
    cfg = Config.fromfile(CACHED_DIST)
    shapes = {'logits': (19, 8), 'feats': (512, 8)}
    budget = cached_recipe_budget(cfg, 2.5, 4, shapes=shapes)
    # Views in 512 x 1024 crops: 2 flips x (1/4 + 1 + 4) x 4 crops.
    forwards = 2975 * 2 * (0.25 + 1 + 4) * 4
    assert budget.images_per_step == 16
    assert budget.pass_forwards == pytest.approx(forwards)
    assert budget.caches['fp16'].pass_share == pytest.approx(forwards /
                                                             (40000 * 16))
    cells = 2 * (64 * 128 + 128 * 256 + 256 * 512)  # per channel and image
    assert budget.caches['fp16'].total_gb == pytest.approx(
        2975 * cells * (19 + 512) * 2 / 1e9)
    # int8: a byte a value and a float scale a map (2 maps x 6 views).
    assert budget.caches['int8'].total_gb == pytest.approx(
        2975 * (cells * (19 + 512) + 4 * 12) / 1e9)
    # The pass in student iterations: forwards x F_t / (3 F_s x 16).
    pass_iters = forwards * 2.5 / (3 * 16)
    assert budget.pass_student_iters == pytest.approx(pass_iters)
    amortised = ITERS_MULTIPLE * round((40000 + pass_iters) / ITERS_MULTIPLE)
    assert budget.student_iters('flops') == amortised > 40000
    assert budget.student_iters('flops', amortised=False) == 40000
    assert budget.student_iters('iters') == 40000
    with pytest.raises(ValueError, match='flops or iters'):
        budget.student_iters('time')


def test_kd_budget_refuses_to_time_a_cached_recipe():
    result = run_with_deadline([TOOL, CACHED_DIST],
                               TIMEOUT,
                               python=True,
                               cwd=REPO)
    assert result.returncode == 2
    lines = result.stdout.strip().splitlines()
    assert 'serves its teacher from a cache' in lines[-1]
    assert '--by flops' in lines[-1]


@pytest.mark.slow
@pytest.mark.parametrize('reused', [False, True])
def test_kd_budget_on_a_cached_recipe(reused, tmp_path):
    """The tool recognises the cached recipe, and the config it writes
    trains the student for the hand-counted iterations: the recipe's, plus
    the cache pass's unless the cache is reused."""
    from gskd_mm.teacher_cache import online_config
    out = tmp_path / 'matched.py'
    result = run_with_deadline([
        TOOL, CACHED_DIST, '--by', 'flops', '--crop', '64', '128', '--out',
        str(out)
    ] + (['--reused-cache'] if reused else []),
                               TIMEOUT,
                               python=True,
                               cwd=REPO)
    assert result.returncode == 0, result.stdout[-4000:]
    assert 'dense, 6 views per image' in result.stdout
    register_all_modules(init_default_scope=False)
    ratio = recipe_flops(online_config(Config.fromfile(CACHED_DIST)),
                         (64, 128)).ratio
    pass_iters = 2975 * 2 * (0.25 + 1 + 4) * 4 * ratio / (3 * 16)
    amortised = matched_iters(40000, 1 + pass_iters / 40000, ITERS_MULTIPLE)
    assert f'{amortised}' in result.stdout and '40000' in result.stdout
    written = Config.fromfile(str(out))
    assert written.train_cfg.max_iters == (40000 if reused else amortised)
    assert 'teacher' not in written.model


def test_storage_results_are_the_tools():
    """The Cityscapes DIST rows of results/teacher_cache_storage.json are
    what the library computes now."""
    from gskd_mm.teacher_cache.budget import storage_table
    register_all_modules(init_default_scope=False)
    name = osp.splitext(osp.basename(CACHED_DIST))[0]
    header, rows = storage_table({name: Config.fromfile(CACHED_DIST)},
                                 {name: 4})
    with open(STORAGE_RESULTS) as f:
        table = json.load(f)['tables']['storage']
    assert table['header'] == header
    assert [r for r in table['rows'] if r[0] == name] == rows
    datasets = {r[1] for r in table['rows']}
    assert len(datasets) == 3, datasets  # Cityscapes, ADE20K, VOC aug
