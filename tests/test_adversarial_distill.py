# Copyright (c) gskd-mm contributors. All rights reserved.
"""Adversarial distillation: discriminator, hinge losses, its optimizer
inside MMEngine's loop, checkpoints and resume."""
import copy
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import OptimWrapper, OptimWrapperDict, build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmrazor.registry import MODELS
from torch.nn.utils.parametrize import is_parametrized

from gskd_mm.models import AdversarialDistillDataParallel
from gskd_mm.testing import generated_batch
from gskd_mm.utils import register_all_modules

from helpers import spawn_with_deadline


ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CWD = osp.join(
    ROOT, 'projects', 'gskd_demo', 'configs',
    'cwd_deeplabv3_r18-w16-d4_deeplabv3_r18-w8-d4_synthetic-64x64.py')
# The demo's dataset type is imported from the repository root.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def test_discriminator_is_the_authors_architecture():
    disc = MODELS.build(dict(type='SAGANDiscriminator', in_channels=19))
    convs = [
        m for m in disc.stages.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (4, 4)
    ]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (19, 64), (64, 128), (128, 256), (256, 512)]
    assert all(c.stride == (2, 2) and is_parametrized(c, 'weight')
               for c in convs)  # spectral norm on every stride-2 conv
    attention = [type(s[-1]).__name__ for s in disc.stages]
    assert attention == ['LeakyReLU', 'LeakyReLU', 'SelfAttention',
                         'SelfAttention']
    assert disc.last.kernel_size == (4, 4) and disc.last.out_channels == 1
    # A 512x1024 Cityscapes crop gives stride-8 logits of 64x128.
    assert disc(torch.randn(2, 19, 64, 128)).shape == (2, 1, 1, 5)
    with pytest.raises(ValueError, match='H, W >= 64'):
        disc(torch.randn(2, 19, 32, 32))


def test_hinge_losses_match_their_formulas():
    scores_S, scores_T = torch.randn(2, 1, 3, 5), torch.randn(2, 1, 3, 5)
    g = MODELS.build(dict(type='HingeGeneratorLoss'))
    d = MODELS.build(dict(type='HingeDiscriminatorLoss'))
    assert torch.allclose(g(scores_S), -0.001 * scores_S.mean())
    expected = torch.clamp(1 - scores_T, min=0).mean() + torch.clamp(
        1 + scores_S, min=0).mean()
    assert torch.allclose(d(scores_S, scores_T), 0.1 * expected)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert d(scores_S.bfloat16(), scores_T.bfloat16()).dtype == \
            torch.float32
    with pytest.raises(ValueError, match='same stride'):
        d(scores_S, scores_T[:, :, :2])


def adversarial_cfg():
    """The demo's CWD recipe with adversarial distillation, 64x64 crops."""
    cfg = Config.fromfile(DEMO_CWD)
    cfg.model.type = 'AdversarialEvalTeacherDistill'
    # 8x8 logits: one stage (the recipes' four need 64x64 logits).
    cfg.model.discriminator = dict(type='SAGANDiscriminator', num_stages=1)
    cfg.optim_wrapper = dict(
        constructor='mmrazor.DiscriminatorOptimWrapperConstructor',
        architecture=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        discriminator=dict(
            optimizer=dict(type='Adam', lr=4e-4, betas=(0.9, 0.99))))
    cfg.param_scheduler = dict(
        architecture=[
            dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=4,
                 by_epoch=False)
        ],
        discriminator=[])
    return cfg


@pytest.fixture(scope='module')
def model_and_optim():
    cfg = adversarial_cfg()
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.train()
    return model, build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))


def test_optimizers_split_the_parameters(model_and_optim):
    model, optim = model_and_optim
    assert isinstance(optim, OptimWrapperDict)
    ids = {
        key: {id(p) for g in o.optimizer.param_groups for p in g['params']}
        for key, o in optim.items()
    }
    disc = {id(p) for p in model.discriminator.parameters()}
    assert ids['discriminator'] == disc
    assert ids['architecture'] == {id(p) for p in model.parameters()} - disc
    assert type(optim['discriminator'].optimizer).__name__ == 'Adam'
    assert type(optim['architecture'].optimizer).__name__ == 'SGD'


def test_train_step_updates_student_and_discriminator(model_and_optim):
    model, optim = model_and_optim
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    log_vars = model.train_step(generated_batch(2, (64, 64), 7), optim)
    assert {'distill.loss_adv_g', 'distill.loss_adv_d'} <= set(log_vars)
    assert all(torch.isfinite(v) for v in log_vars.values())
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    prefixes = {k.split('.')[0] for k in changed}
    assert {'architecture', 'distiller', 'discriminator'} <= prefixes
    assert not any(k.startswith('teacher.') for k in changed)
    adam = optim['discriminator'].optimizer
    assert all(adam.state[p]['step'] == 1
               for p in model.discriminator.parameters() if p.requires_grad)


def test_discriminator_learns_from_its_own_loss_only(model_and_optim):
    """The generator term's gradients on the discriminator are dropped."""
    model, optim = model_and_optim
    model.train_step(generated_batch(2, (64, 64), 7), optim)
    logits = model._recorded_logits()
    reference = copy.deepcopy(model.discriminator)
    state = copy.deepcopy(optim['discriminator'].state_dict())
    # One discriminator step from the same state and logits, by hand.
    adam = torch.optim.Adam(reference.parameters(), lr=4e-4,
                            betas=(0.9, 0.99))
    adam.load_state_dict(state)
    scores_S = reference(logits['student'].detach())  # same order
    scores_T = reference(logits['teacher'])
    loss = 0.1 * (F.relu(1 - scores_T).mean() + F.relu(1 + scores_S).mean())
    loss.backward()
    adam.step()
    for p in model.discriminator.parameters():  # stale generator gradients
        p.grad = torch.ones_like(p)
    model.discriminator_step(optim['discriminator'])
    for (name, p), q in zip(model.discriminator.named_parameters(),
                            reference.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name


def test_a_single_optimizer_is_refused(model_and_optim):
    model, _ = model_and_optim
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    with pytest.raises(TypeError,
                       match='DiscriminatorOptimWrapperConstructor'):
        model.train_step(generated_batch(2, (64, 64), 7), optim)


@pytest.mark.slow
def test_discriminator_and_its_optimizer_are_resumed(tmp_path):
    def runner(work_dir, **kwargs):
        cfg = adversarial_cfg()
        cfg.work_dir = str(work_dir)
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2,
                             val_interval=100)
        cfg.train_dataloader.batch_size = 2
        cfg.default_hooks.checkpoint.interval = 2
        cfg.default_hooks.visualization = dict(type='SegVisualizationHook')
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
        cfg.merge_from_dict(kwargs)
        return Runner.from_cfg(cfg)

    first = runner(tmp_path / 'first')
    first.train()
    assert first.optim_wrapper['architecture'].get_lr()['lr'][0] < 0.01
    disc_state = copy.deepcopy(first.model.discriminator.state_dict())
    optim_state = copy.deepcopy(first.optim_wrapper.state_dict())

    resumed = runner(tmp_path / 'second', resume=True,
                     load_from=str(tmp_path / 'first' / 'iter_2.pth'))
    resumed.train()  # resumes at iteration 2 of 2: no step
    for key, value in resumed.model.discriminator.state_dict().items():
        assert torch.equal(value, disc_state[key]), key
    state = resumed.optim_wrapper.state_dict()
    for key in ('architecture', 'discriminator'):
        saved = optim_state[key]['state']
        assert state[key]['state'].keys() == saved.keys() and saved
        for idx, entries in saved.items():
            for name, value in entries.items():
                assert torch.equal(
                    torch.as_tensor(state[key]['state'][idx][name]),
                    torch.as_tensor(value)), (key, idx, name)
    assert resumed.optim_wrapper['architecture'].get_lr() == \
        first.optim_wrapper['architecture'].get_lr()
    assert resumed.optim_wrapper['discriminator'].get_lr()['lr'] == [4e-4]


def ddp_worker(rank: int, out: str) -> None:
    """Two training steps of the wrapped algorithm on this rank's data."""
    register_all_modules(init_default_scope=False)
    init_default_scope('mmseg')
    cfg = adversarial_cfg()
    cfg.model.discriminator.norm_cfg = dict(type='BN')  # CPU DDP: no SyncBN
    torch.manual_seed(0)  # the same initial weights on both ranks
    model = MODELS.build(cfg.model)
    model.train()
    initial = copy.deepcopy(dict(model.discriminator.named_parameters()))
    wrapped = AdversarialDistillDataParallel(
        module=model, broadcast_buffers=False)
    optim = build_optim_wrapper(wrapped, copy.deepcopy(cfg.optim_wrapper))
    torch.manual_seed(1 + rank)  # different images on each rank
    for _ in range(2):
        log_vars = wrapped.train_step(generated_batch(2, (64, 64), 7), optim)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    torch.save(
        dict(params=params, initial=initial,
             loss_adv_d=float(log_vars['distill.loss_adv_d'])),
        osp.join(out, f'rank{rank}.pth'))


@pytest.mark.slow
@pytest.mark.multiprocess
def test_ranks_stay_identical_under_ddp(tmp_path):
    """Student, connectors and discriminator are the same on both ranks
    after steps on different images: every gradient is averaged."""
    spawn_with_deadline(ddp_worker, (str(tmp_path), ))
    ranks = [torch.load(tmp_path / f'rank{r}.pth') for r in range(2)]
    # The ranks saw different batches (their losses differ) ...
    assert ranks[0]['loss_adv_d'] != ranks[1]['loss_adv_d']
    # ... and still hold the same weights, which the steps changed.
    for name, value in ranks[0]['params'].items():
        assert torch.equal(value, ranks[1]['params'][name]), name
    changed = [
        name for name, value in ranks[0]['initial'].items() if not
        torch.equal(value, ranks[0]['params'][f'discriminator.{name}'])
    ]
    # Two biases have a zero gradient by construction: the last one while
    # all scores are in (-1, 1) (the hinge terms' slopes cancel), and the
    # attention keys' (it adds the same q.b to every key of a query, which
    # the softmax ignores).
    assert 'stages.0.0.parametrizations.weight.original' in changed
    assert set(ranks[0]['initial']) - set(changed) <= {
        'last.bias', 'stages.0.2.key.bias'}
