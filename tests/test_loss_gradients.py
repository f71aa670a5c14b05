# Copyright (c) gskd-mm contributors. All rights reserved.
"""Per-term gradient norms: the library, the training hook and the tool."""
import copy
import os
import os.path as osp
import sys
import uuid
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmrazor.registry import MODELS

from gskd_mm.analysis import (loss_gradient_norms, term_gradient_norms,
                              weights_for_share)
from gskd_mm.engine import LossGradientHook
from gskd_mm.testing import generated_batch
import gskd_mm  # noqa: F401  registers the modules

from helpers import run_with_deadline, shrink_recipe, spawn_with_deadline


ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'projects', 'gskd_demo', 'configs')
# The demo's configs name their dataset by import path from the repo root.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
GSKD = osp.join(ROOT, 'configs', 'gskd')
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'loss_gradients.py')
DIST_GSKD = osp.join(
    DEMO,
    'dist-gskd_deeplabv3_r18-w16-d4_deeplabv3_r18-w8-d4_synthetic-64x64.py')
CIRKD_GSKD = osp.join(
    DEMO,
    'cirkd-gskd_deeplabv3_r18-w16-d4_deeplabv3_r18-w8-d4_synthetic-64x64.py')
CWD_GSKD = osp.join(
    GSKD, 'cwd-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb2-80k_'
    'cityscapes-512x1024.py')
CROP = (64, 64)


def recipe(path: str, crop=CROP) -> Config:
    """A shrunk recipe whose GSKD samples every labelled pixel."""
    cfg = shrink_recipe(Config.fromfile(path), crop=crop)
    for loss in cfg.model.distiller.distill_losses.values():
        if loss.type == 'GSKDLoss':
            loss.valid_mask = 'labeled'  # an untrained teacher is never right
    return cfg


def build(cfg: Config):
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.train()
    return model


def num_classes(cfg: Config) -> int:
    return cfg.model.architecture.decode_head.num_classes


# ---------------------------------------------------------------------------
# The library


class ToyDistiller(nn.Module):
    """A student, a connector, and the names the library looks for."""

    def __init__(self) -> None:
        super().__init__()
        self.architecture = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1),
                                          nn.Conv2d(8, 4, 1))
        self.distiller = nn.Module()
        self.distiller.connectors = nn.ModuleDict(
            dict(projector=nn.Conv2d(8, 16, 1)))

    def losses(self, images, labels, teacher):
        feat = self.architecture[0](images)
        logits = self.architecture[1](feat)
        # Reaches the projector only: the student feature is detached.
        projected = self.distiller.connectors['projector'](feat.detach())
        return {
            'student.decode.loss_ce': F.cross_entropy(logits, labels),
            'student.decode.acc_seg': torch.tensor(50.0),  # not a loss
            'distill.loss_connector': F.mse_loss(projected, teacher),
            'distill.loss_both': [feat.pow(2).mean(),
                                  projected.pow(2).mean()],
        }


def toy_losses():
    torch.manual_seed(0)
    model = ToyDistiller()
    losses = model.losses(torch.randn(2, 3, 8, 8),
                          torch.randint(0, 4, (2, 8, 8)),
                          torch.randn(2, 16, 8, 8))
    return model, losses


def test_connector_only_term_has_no_student_gradient():
    model, losses = toy_losses()
    norms = term_gradient_norms(model, losses)
    assert list(norms) == [
        'student.decode.loss_ce', 'distill.loss_connector', 'distill.loss_both'
    ]
    conn = norms['distill.loss_connector']
    assert conn.student == 0 and conn.share == 0
    assert conn.connectors['projector'] > 0
    ce = norms['student.decode.loss_ce']
    assert ce.student > 0 and ce.connectors['projector'] == 0
    assert ce.share == 1
    both = norms['distill.loss_both']  # a list of tensors, summed
    assert both.student > 0 and both.connectors['projector'] > 0


def test_norms_are_those_of_the_term_alone_and_leave_grad_untouched():
    model, losses = toy_losses()
    norms = term_gradient_norms(model, losses)
    for p in model.parameters():
        assert p.grad is None  # autograd.grad writes no .grad
    # The graph is kept: the step's own backward still runs.
    losses['student.decode.loss_ce'].backward()
    expected = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in model.architecture.parameters()]))
    assert norms['student.decode.loss_ce'].student == pytest.approx(
        expected.item(), rel=1e-5)


def test_reference_is_resolved_or_named_in_the_error():
    model, losses = toy_losses()
    norms = term_gradient_norms(model, losses, reference='loss_both')
    assert norms['distill.loss_both'].share == 1
    with pytest.raises(KeyError, match='decode.loss_kd.*terms of this step'):
        term_gradient_norms(model, losses, reference='decode.loss_kd')


def test_share_is_linear_in_the_loss_weight():
    cfg = recipe(DIST_GSKD)
    model = build(cfg)
    batch = generated_batch(2, CROP, num_classes(cfg))
    losses = model.distiller.distill_losses
    shares = {}
    for weight in (0.0, 1.0, 3.0):
        losses['loss_gskd'].loss_weight = weight
        losses['loss_dist'].loss_weight = weight
        torch.manual_seed(1)  # the same dropout and GSKD draws each time
        norms = loss_gradient_norms(model, batch)
        shares[weight] = {
            k: norms[f'distill.{k}'].share
            for k in ('loss_gskd', 'loss_dist')
        }
    for term in ('loss_gskd', 'loss_dist'):
        assert shares[0.0][term] == 0
        assert shares[1.0][term] > 0
        assert shares[3.0][term] == pytest.approx(3 * shares[1.0][term],
                                                  rel=1e-4)


def test_weight_for_a_target_share_gives_that_share():
    cfg = recipe(DIST_GSKD)
    model = build(cfg)
    batch = generated_batch(2, CROP, num_classes(cfg))
    torch.manual_seed(1)
    norms = loss_gradient_norms(model, batch)
    weights = weights_for_share(model, norms, target=0.5)
    assert set(weights) == {'distill.loss_gskd', 'distill.loss_dist'}
    # Set the suggested weight: the same draws now give the target share.
    gskd = model.distiller.distill_losses['loss_gskd']
    current, wanted = weights['distill.loss_gskd']
    assert current == gskd.loss_weight
    gskd.loss_weight = wanted
    torch.manual_seed(1)
    norms = loss_gradient_norms(model, batch)
    assert norms['distill.loss_gskd'].share == pytest.approx(
        0.5, rel=1e-4)
    # A term without gradient gets no suggestion.
    gskd.loss_weight = 0.0
    torch.manual_seed(1)
    norms = loss_gradient_norms(model, batch)
    assert 'distill.loss_gskd' not in weights_for_share(model, norms, 0.5)


# ---------------------------------------------------------------------------
# The hook: the optimizer step is the same with it


def train(cfg: Config, hook, steps: int = 3):
    """A few training steps as the runner's loop calls them."""
    model = build(cfg)
    optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    runner = SimpleNamespace(
        model=model,
        iter=0,
        message_hub=MessageHub.get_instance(f'test-{uuid.uuid4()}'))
    torch.manual_seed(2)
    batches = [
        generated_batch(2, CROP, num_classes(cfg)) for _ in range(steps)
    ]
    hooked = []
    for i, batch in enumerate(batches):
        runner.iter = i
        if hook is not None:
            hook.before_train_iter(runner, i, batch)
            hooked.append(bool(model._forward_hooks))
        model.train_step(batch, optim)
        if hook is not None:
            hook.after_train_iter(runner, i, batch)
    return model.state_dict(), runner.message_hub, hooked


@pytest.mark.parametrize('path', [DIST_GSKD, CIRKD_GSKD, CWD_GSKD],
                         ids=['dist-gskd', 'cirkd-gskd', 'cwd-gskd-adv'])
def test_hook_leaves_training_bit_identical(path):
    """Dropout, GSKD's draws, BN statistics, CIRKD's queues, the
    discriminator: every parameter and buffer is the same with the hook."""
    cfg = recipe(path)
    without, _, _ = train(cfg, None)
    hook = LossGradientHook(interval=2)
    with_hook, hub, hooked = train(cfg, hook)
    assert without.keys() == with_hook.keys()
    for name, value in without.items():
        assert torch.equal(value, with_hook[name]), name
    # Measured on the 1st (the initial student) and 2nd steps; nothing
    # registered on the 3rd.
    assert hooked == [True, True, False]
    assert len(hook.seconds) == 2
    assert hook.initial and hook.initial is not hook.last
    terms = ['student.decode.loss_ce'
             ] + [f'distill.{k}' for k in cfg.model.distiller.distill_losses]
    if 'discriminator' in cfg.model:
        terms.append('distill.loss_adv_g')  # the generator term is measured
    assert set(terms) <= set(hook.last)
    assert 'distill.loss_adv_d' not in hook.last
    for term in terms:
        assert hub.get_scalar(f'train/grad_norm/{term}').current() >= 0
        assert hub.get_scalar(f'train/grad_share/{term}').current() == \
            pytest.approx(hook.last[term].share)
    assert hook.last['distill.loss_gskd'].student > 0
    assert hub.get_scalar('train/grad_norm/gskd_projector/'
                          'distill.loss_gskd').current() > 0


def test_hook_measures_the_first_step_only_when_asked():
    cfg = recipe(DIST_GSKD)
    hook = LossGradientHook(interval=2, first=False)
    _, _, hooked = train(cfg, hook)
    assert hooked == [False, True, False]
    assert hook.initial == {} and hook.last


def test_hook_rejects_a_bad_interval():
    with pytest.raises(ValueError, match='positive int'):
        LossGradientHook(interval=0)


# ---------------------------------------------------------------------------
# The tool


def expected_terms(path: str):
    cfg = Config.fromfile(path)
    terms = ['student.decode.loss_ce']
    if cfg.model.architecture.get('auxiliary_head'):
        terms.append('student.aux.loss_ce')
    terms += [f'distill.{k}' for k in cfg.model.distiller.distill_losses]
    if 'discriminator' in cfg.model:
        terms.append('distill.loss_adv_g')
    return terms


@pytest.mark.slow
@pytest.mark.parametrize('path, crop', [(DIST_GSKD, '64'), (CIRKD_GSKD, '64'),
                                        (CWD_GSKD, '64')],
                         ids=['dist-gskd', 'cirkd-gskd', 'cwd-gskd-adv'])
def test_tool_prints_every_term(path, crop, tmp_path):
    # The demo's dataset generates its data into this cache.
    env = dict(os.environ,
               PYTHONPATH=ROOT,
               OMP_NUM_THREADS='1',
               GSKD_MM_CACHE=str(tmp_path))
    result = run_with_deadline(
        [TOOL, path, '--crop', crop, crop, '--batch', '2', '--iters', '2'],
        600,
        python=True,
        cwd=ROOT,
        env=env)
    assert result.returncode == 0, result.stdout[-3000:]
    out = result.stdout
    assert 'networks: untrained' in out
    if Config.fromfile(path).train_dataloader.dataset.data_root is None:
        assert "the recipe's training data" in out  # the demo's
    else:
        assert 'generated data (data/cityscapes/ absent)' in out
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.startswith(('student.', 'distill.'))
    }
    for term in expected_terms(path):
        assert term in rows, (term, out[-3000:])
    assert float(rows['student.decode.loss_ce'][2]) == 100
    # The recipe's teacher-correct GSKD pixels, with an untrained teacher.
    assert 'valid_mask=labeled' in out
    if 'discriminator' in Config.fromfile(path).model:
        assert 'discriminator: 1 stages instead of 4' in out


# ---------------------------------------------------------------------------
# DDP: each rank measures its own local gradients; DDP's step is unchanged

WORLD_SIZE = 2


class ToyForward(ToyDistiller):
    """The toy with a loss-mode forward, as a segmentor's."""

    def forward(self, images, labels, teacher, mode='loss'):
        return self.losses(images, labels, teacher)


def rank_batch(rank: int):
    gen = torch.Generator().manual_seed(100 + rank)
    return (torch.randn(2, 3, 8, 8, generator=gen),
            torch.randint(0, 4, (2, 8, 8), generator=gen),
            torch.randn(2, 16, 8, 8, generator=gen))


def ddp_worker(rank: int, out: str) -> None:
    from torch.nn.parallel import DistributedDataParallel
    results = {}
    for hooked in (False, True):
        torch.manual_seed(0)  # the same weights on both ranks
        model = DistributedDataParallel(ToyForward())
        hook = LossGradientHook(interval=1)
        runner = SimpleNamespace(
            model=model,
            iter=0,
            message_hub=MessageHub.get_instance(f'ddp-{rank}-{hooked}'))
        if hooked:
            hook.before_train_iter(runner, 0)
        losses = model(*rank_batch(rank), mode='loss')
        sum(v if torch.is_tensor(v) else sum(v) for k, v in losses.items()
            if 'loss' in k).backward()
        if hooked:
            hook.after_train_iter(runner, 0)
        results[hooked] = dict(grads={
            n: p.grad.clone()
            for n, p in model.module.named_parameters()
        },
                               norms=hook.last)
    torch.save(results, osp.join(out, f'rank{rank}.pth'))


@pytest.mark.slow
@pytest.mark.multiprocess
def test_hook_under_ddp_measures_local_gradients(tmp_path):
    spawn_with_deadline(ddp_worker, (str(tmp_path), ), WORLD_SIZE, 300)
    for rank in range(WORLD_SIZE):
        result = torch.load(tmp_path / f'rank{rank}.pth', weights_only=False)
        # DDP's averaged gradients are the same with the hook.
        for name, grad in result[False]['grads'].items():
            assert torch.equal(grad, result[True]['grads'][name]), name
        # The measured norms are this rank's own, before the all-reduce.
        torch.manual_seed(0)
        local = ToyForward()
        expected = term_gradient_norms(local,
                                       local(*rank_batch(rank), mode='loss'))
        measured = result[True]['norms']
        assert measured.keys() == expected.keys()
        for term, want in expected.items():
            got = measured[term]
            for key in ('value', 'student', 'share'):
                assert getattr(got, key) == pytest.approx(
                    getattr(want, key), rel=1e-5,
                    nan_ok=True), (rank, term, key)
            assert got.connectors.keys() == want.connectors.keys()
            for name, value in want.connectors.items():
                assert got.connectors[name] == pytest.approx(
                    value, rel=1e-5), (rank, term, name)
    # The ranks' batches differ, so their local norms do too.
    norms = [
        torch.load(tmp_path / f'rank{r}.pth', weights_only=False)[True]
        ['norms'] for r in range(WORLD_SIZE)
    ]
    assert norms[0]['distill.loss_connector'].connectors['projector'] != \
        norms[1]['distill.loss_connector'].connectors['projector']


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_hook_under_amp_gives_unscaled_norms_and_the_same_step():
    """AmpOptimWrapper (CUDA only): the loss scaler (65536 to start) is not
    in the norms, and the step is bit-identical with the hook."""
    cfg = recipe(DIST_GSKD)
    cfg.optim_wrapper = dict(cfg.optim_wrapper,
                             type='AmpOptimWrapper',
                             loss_scale='dynamic')
    torch.manual_seed(2)
    batch = generated_batch(2, CROP, num_classes(cfg))

    def step(hook):
        model = build(cfg).cuda()
        optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
        runner = SimpleNamespace(
            model=model,
            optim_wrapper=optim,
            iter=0,
            message_hub=MessageHub.get_instance(f'amp-{uuid.uuid4()}'))
        torch.manual_seed(3)
        if hook is not None:
            hook.before_train_iter(runner, 0, batch)
        model.train_step(batch, optim)
        if hook is not None:
            hook.after_train_iter(runner, 0, batch)
        return model.state_dict()

    hook = LossGradientHook(interval=1)
    without, with_hook = step(None), step(hook)
    for name, value in without.items():
        assert torch.equal(value, with_hook[name]), name
    # The same batch in float32, without any scaler.
    model = build(cfg).cuda()
    torch.manual_seed(3)
    fp32 = loss_gradient_norms(model, batch)
    # Half precision changes the networks' outputs a little; a scaled norm
    # would be thousands of times larger.
    term = 'student.decode.loss_ce'
    assert hook.last[term].student == pytest.approx(
        fp32[term].student, rel=0.1)


class TinyTermToy(ToyDistiller):
    """The toy with a distillation term too small for float16 gradients."""

    def forward(self, images, labels, teacher, mode='loss'):
        losses = self.losses(images, labels, teacher)
        feat = self.architecture[0](images)
        losses['distill.loss_tiny'] = 1e-7 * feat.float().pow(2).mean()
        return losses


def test_hook_under_fp16_autocast_measures_at_the_loss_scale():
    """Under float16 autocast a small term's gradient flushes to 0 when
    differentiated unscaled; the hook differentiates it at the loss
    scaler's scale, as the step's backward does, and unscales the norms."""
    torch.manual_seed(0)
    model = TinyTermToy()
    inputs = (torch.randn(2, 3, 8, 8), torch.randint(0, 4, (2, 8, 8)),
              torch.randn(2, 16, 8, 8))
    with torch.autocast('cpu', dtype=torch.float16):
        unscaled = term_gradient_norms(model, model(*inputs))
    assert unscaled['distill.loss_tiny'].student == 0  # underflow
    scaler = torch.amp.GradScaler('cpu', init_scale=2.**16)
    runner = SimpleNamespace(
        model=model,
        optim_wrapper=SimpleNamespace(loss_scaler=scaler),
        iter=0,
        message_hub=MessageHub.get_instance(f'fp16-{uuid.uuid4()}'))
    hook = LossGradientHook(interval=1)
    hook.before_train_iter(runner, 0)
    with torch.autocast('cpu', dtype=torch.float16):
        model(*inputs, mode='loss')
    hook.after_train_iter(runner, 0)
    fp32 = term_gradient_norms(model, model(*inputs))
    for term in ('distill.loss_tiny', 'student.decode.loss_ce'):
        assert hook.last[term].student == pytest.approx(
            fp32[term].student, rel=1e-2), term
    with pytest.raises(ValueError, match='loss_scale'):
        term_gradient_norms(model, model(*inputs), loss_scale=0)


@pytest.mark.slow
def test_hook_values_reach_the_log_and_scalars_json(tmp_path):
    """With a Runner: the text log and vis_data/scalars.json hold them."""
    import json

    from mmengine.runner import Runner

    from projects.gskd_demo.gskd_demo.dataset import \
        generate_synthetic_scenes
    cfg = recipe(DIST_GSKD)
    data_root = generate_synthetic_scenes(str(tmp_path / 'data'),
                                          num_train=4,
                                          num_val=2,
                                          img_size=64)
    cfg.train_dataloader.dataset.data_root = data_root
    cfg.train_dataloader.batch_size = 2
    cfg.val_dataloader.dataset.data_root = data_root
    cfg.test_dataloader.dataset.data_root = data_root
    cfg.train_cfg = dict(type='IterBasedTrainLoop',
                         max_iters=4,
                         val_interval=100)
    cfg.param_scheduler = []
    cfg.default_hooks.logger.interval = 2
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    cfg.custom_hooks = [dict(type='LossGradientHook', interval=2)]
    cfg.work_dir = str(tmp_path / 'work')
    cfg.visualizer.name = f'lg-{uuid.uuid4()}'
    cfg.experiment_name = f'lg-{uuid.uuid4()}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    scalars = [
        json.loads(line)
        for line in open(osp.join(runner.log_dir, 'vis_data', 'scalars.json'))
    ]
    logged = [s for s in scalars if 'grad_share/distill.loss_gskd' in s]
    assert [s['iter'] for s in logged] == [2, 4]
    for entry in logged:
        assert entry['grad_share/student.decode.loss_ce'] == 1
        assert entry['grad_norm/distill.loss_dist'] > 0
        assert entry['grad_norm/gskd_projector/distill.loss_gskd'] > 0
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        assert 'grad_share/distill.loss_gskd' in f.read()
