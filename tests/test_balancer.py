# Copyright (c) gskd-mm contributors. All rights reserved.
"""GradientShareBalancerHook: the weight of a distillation term follows its
target share of the task gradient."""
import copy
import math
import os.path as osp
import uuid
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmrazor.registry import MODELS

from gskd_mm.engine import GradientShareBalancerHook
from gskd_mm.engine.hooks.gradient_share_balancer_hook import CHECKPOINT_KEY
from gskd_mm.testing import generated_batch

from helpers import shrink_recipe, spawn_with_deadline


ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
GSKD = osp.join(ROOT, 'configs', 'gskd')
DIST_GSKD = osp.join(
    GSKD, 'dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
    '4xb4-40k_cityscapes-512x1024.py')
CWD_GSKD = osp.join(
    GSKD, 'cwd-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_4xb2-80k_'
    'cityscapes-512x1024.py')
CROP = (64, 64)


# ---------------------------------------------------------------------------
# A toy: a linear student, the task term and one distillation term


class ToyLoss(nn.Module):
    """A distillation loss: ``loss_weight`` times a function of the output.

    ``reach=False`` detaches the output: the term never reaches the
    student."""

    def __init__(self, loss_weight: float = 1.0, reach: bool = True):
        super().__init__()
        self.loss_weight = loss_weight
        self.reach = reach

    def forward(self, out):
        out = out if self.reach else out.detach().requires_grad_()
        return self.loss_weight * out.pow(2).mean()


class Toy(nn.Module):
    """What the hook looks for: ``architecture`` (the student) and
    ``distiller.distill_losses``; a loss-mode forward."""

    def __init__(self, loss_weight: float = 1.0, reach: bool = True):
        super().__init__()
        torch.manual_seed(0)
        self.architecture = nn.Linear(4, 3)
        self.distiller = nn.Module()
        self.distiller.connectors = nn.ModuleDict()
        self.distiller.distill_losses = nn.ModuleDict(
            dict(loss_kd=ToyLoss(loss_weight, reach)))

    def forward(self, inputs, mode='loss'):
        out = self.architecture(inputs)
        losses = {'student.decode.loss_ce': out.sum() / 10}
        if not getattr(self, 'distillation_stopped', False):
            losses['distill.loss_kd'] = self.distiller.distill_losses[
                'loss_kd'](out)
        return losses


def fake_runner(model) -> SimpleNamespace:
    return SimpleNamespace(
        model=model,
        iter=0,
        message_hub=MessageHub.get_instance(f'balancer-{uuid.uuid4()}'))


def run_toy(hook, model, steps: int, inputs=None):
    """Forwards as the runner's loop calls them (no optimizer: the student
    does not move, so a term's share at weight 1 is the same every step)."""
    inputs = torch.randn(8, 4, generator=torch.Generator().manual_seed(1)) \
        if inputs is None else inputs
    runner = fake_runner(model)
    hook.before_train(runner)
    for i in range(steps):
        runner.iter = i
        hook.before_train_iter(runner, i)
        model(inputs, mode='loss')
        hook.after_train_iter(runner, i)
    return runner


def unit_share(model, inputs=None) -> float:
    """The toy term's share at loss weight 1, measured directly."""
    from gskd_mm.analysis import term_gradient_norms
    loss = model.distiller.distill_losses['loss_kd']
    weight, loss.loss_weight = loss.loss_weight, 1.0
    if inputs is None:
        inputs = torch.randn(8, 4,
                             generator=torch.Generator().manual_seed(1))
    share = term_gradient_norms(model, model(inputs))['distill.loss_kd'].share
    loss.loss_weight = weight
    return share


@pytest.mark.parametrize('target', [0.05, 1.0, 30.0])
def test_weight_reaches_its_target_share_within_the_stated_updates(target):
    """With a constant share at weight 1 (u), the weight goes to target / u
    by at most ``max_change`` per update: it is there after
    ceil(|log(target / (u * w0))| / log(max_change)) updates, and stays."""
    model = Toy(loss_weight=1.0)
    u = unit_share(model)
    hook = GradientShareBalancerHook(dict(loss_kd=target), interval=1,
                                     max_change=2.0)
    needed = math.ceil(abs(math.log(target / u)) / math.log(2.0))
    run_toy(hook, model, needed + 3)
    weights = [h.weight for h in hook.history]
    shares = [h.share for h in hook.history]
    assert weights[needed - 1] == pytest.approx(target / u, rel=1e-6)
    if needed > 1:  # not there one update earlier
        assert weights[needed - 2] != pytest.approx(target / u, rel=1e-3)
    # Measured at the step's weight: the target from the next step on.
    for share in shares[needed:]:
        assert share == pytest.approx(target, rel=1e-6)
    loss = model.distiller.distill_losses['loss_kd']
    assert loss.loss_weight == pytest.approx(target / u, rel=1e-6)
    assert hook.weights['loss_kd'] == loss.loss_weight


def test_measures_every_interval_and_logs_weight_and_share():
    model = Toy()
    hook = GradientShareBalancerHook(dict(loss_kd=1.0), interval=3)
    runner = run_toy(hook, model, 7)
    assert [h.iter for h in hook.history] == [2, 5]
    hub = runner.message_hub
    assert hub.get_scalar('train/balancer/weight/loss_kd').current() == \
        pytest.approx(hook.weights['loss_kd'])
    assert hub.get_scalar('train/balancer/share/loss_kd').current() == \
        pytest.approx(hook.history[-1].share)
    # Only the reference and the balanced term are measured.
    assert set(hook.last) == {'student.decode.loss_ce', 'distill.loss_kd'}


def test_moving_average_damps_one_odd_batch():
    """After one batch whose share at weight 1 is r times the others', the
    weight moves by a factor r ** (1 - momentum), not r."""
    model = Toy()
    hook = GradientShareBalancerHook(dict(loss_kd=1.0), interval=1,
                                     momentum=0.9, max_change=1e6,
                                     weight_range=(1e-6, 1e6))
    inputs = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    run_toy(hook, model, 3, inputs)
    settled = hook.weights['loss_kd']
    assert settled == pytest.approx(1 / unit_share(model, inputs))
    # Larger inputs: the term's gradient (quadratic in the output) grows
    # faster than the task's (linear).
    odd = inputs * 10
    ratio = unit_share(model, odd) / unit_share(model, inputs)
    assert ratio > 5
    runner = fake_runner(model)
    runner.iter = 3
    hook.before_train_iter(runner, 3)
    model(odd, mode='loss')
    hook.after_train_iter(runner, 3)
    assert hook.weights['loss_kd'] == pytest.approx(
        settled / ratio**0.1, rel=1e-6)


def test_warmup_ramps_the_weight_in_use():
    model = Toy(loss_weight=2.0)
    loss = model.distiller.distill_losses['loss_kd']
    # A target far away and no room to move: only the ramp changes it.
    hook = GradientShareBalancerHook(dict(loss_kd=1.0), interval=100,
                                     warmup_iters=4)
    runner = fake_runner(model)
    hook.before_train(runner)
    used = []
    for i in range(6):
        runner.iter = i
        hook.before_train_iter(runner, i)
        used.append(loss.loss_weight)
        hook.after_train_iter(runner, i)
    assert used == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 2.0])


def test_weight_stays_within_its_range_and_says_so():
    model = Toy(loss_weight=1.0)
    u = unit_share(model)
    hook = GradientShareBalancerHook(dict(loss_kd=1000 * u), interval=1,
                                     weight_range=(0.5, 8.0))
    run_toy(hook, model, 6)
    assert hook.weights['loss_kd'] == 8.0
    assert [h.weight
            for h in hook.history] == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert 'loss_kd' in hook._warned  # said once that it is held back


def test_a_term_that_never_reaches_the_student_keeps_its_weight():
    """No division by zero: measurements without a student gradient are
    skipped, the weight stays, and it says so once."""
    model = Toy(loss_weight=3.0, reach=False)
    hook = GradientShareBalancerHook(dict(loss_kd=1.0), interval=1)
    run_toy(hook, model, 12)
    assert hook.weights['loss_kd'] == 3.0
    assert model.distiller.distill_losses['loss_kd'].loss_weight == 3.0
    assert all(h.share is None for h in hook.history)
    assert len(hook.history) == 12
    assert 'loss_kd' in hook._warned  # warned after 10 measurements


def test_a_small_term_under_fp16_is_balanced_at_the_loss_scale():
    """Under float16 autocast a term whose gradient is too small for
    float16 is measured at the loss scaler's scale, as the step's backward
    sees it: its share is the float32 one and its weight moves, where the
    unscaled measurement would flush it to 0 and skip it."""
    inputs = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    model = Toy(loss_weight=1e-7)
    expected = 1e-7 * unit_share(model, inputs)  # float32
    hook = GradientShareBalancerHook(dict(loss_kd=1.0), interval=1)
    runner = fake_runner(model)
    # A scale at which the task term's gradient fits in float16 (at a
    # larger one it overflows, and the step and the update are skipped).
    runner.optim_wrapper = SimpleNamespace(
        loss_scaler=torch.amp.GradScaler('cpu', init_scale=2.**14))
    hook.before_train(runner)
    hook.before_train_iter(runner, 0)
    with torch.autocast('cpu', dtype=torch.float16):
        model(inputs, mode='loss')
    hook.after_train_iter(runner, 0)
    (update, ) = hook.history
    assert update.share == pytest.approx(expected, rel=1e-2)
    assert hook.weights['loss_kd'] > 1e-7  # moved towards the target
    # Without the scale the same measurement underflows.
    from gskd_mm.analysis import term_gradient_norms
    with torch.autocast('cpu', dtype=torch.float16):
        norms = term_gradient_norms(model, model(inputs))
    assert norms['distill.loss_kd'].student == 0


def test_a_term_missing_from_the_step_is_skipped():
    """Distillation stopped (MMRazor's StopDistillHook drops the distill
    terms): the step trains on, the weight stays."""
    model = Toy(loss_weight=3.0)
    model.distillation_stopped = True
    hook = GradientShareBalancerHook(dict(loss_kd=1.0), interval=1)
    run_toy(hook, model, 3)
    assert hook.weights['loss_kd'] == 3.0
    assert [h.share for h in hook.history] == [None] * 3
    assert set(hook.last) == {'student.decode.loss_ce'}


@pytest.mark.parametrize('targets, match', [
    (dict(loss_kd=0.0), 'must be a number > 0'),
    (dict(loss_kd=-1.0), 'must be a number > 0'),
    (dict(loss_kd=float('inf')), 'must be a number > 0'),
    (dict(loss_kd=True), 'must be a number > 0'),
    ({}, 'targets must be a dict'),
])
def test_bad_targets_are_refused(targets, match):
    with pytest.raises(ValueError, match=match):
        GradientShareBalancerHook(targets)


@pytest.mark.parametrize('kwargs, match', [
    (dict(momentum=1.0), 'momentum'),
    (dict(max_change=1.0), 'max_change'),
    (dict(weight_range=(2.0, 3.0)), 'weight_range'),
    (dict(warmup_iters=-1), 'warmup_iters'),
    (dict(interval=0), 'interval'),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientShareBalancerHook(dict(loss_kd=1.0), **kwargs)


def test_unknown_term_or_weightless_term_is_named():
    with pytest.raises(KeyError, match=r"'loss_gskd'.*\['loss_kd'\]"):
        run_toy(GradientShareBalancerHook(dict(loss_gskd=1.0)), Toy(), 1)
    with pytest.raises(ValueError, match='loss_weight 0.0'):
        run_toy(GradientShareBalancerHook(dict(loss_kd=1.0)),
                Toy(loss_weight=0.0), 1)
    with pytest.raises(TypeError, match='no distiller.distill_losses'):
        run_toy(GradientShareBalancerHook(dict(loss_kd=1.0)),
                nn.Linear(4, 3), 1)


# ---------------------------------------------------------------------------
# Real recipes


def recipe(path: str) -> Config:
    cfg = shrink_recipe(Config.fromfile(path), crop=CROP)
    for loss in cfg.model.distiller.distill_losses.values():
        if loss.type == 'GSKDLoss':
            loss.valid_mask = 'labeled'  # an untrained teacher is never right
    return cfg


def train(cfg: Config, hook, steps: int = 4, autocast=None):
    """Training steps as the runner's loop calls them."""
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.train()
    optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    runner = fake_runner(model)
    torch.manual_seed(2)
    classes = cfg.model.architecture.decode_head.num_classes
    batches = [generated_batch(2, CROP, classes) for _ in range(steps)]
    if hook is not None:
        hook.before_train(runner)
    for i, batch in enumerate(batches):
        runner.iter = i
        if hook is not None:
            hook.before_train_iter(runner, i, batch)
        if autocast is None:
            model.train_step(batch, optim)
        else:
            with torch.autocast('cpu', dtype=autocast):
                model.train_step(batch, optim)
        if hook is not None:
            hook.after_train_iter(runner, i, batch)
    return model


def test_measuring_alone_leaves_training_bit_identical():
    """A balancer that may not move its weights (range 1x) leaves every
    parameter and buffer as training without it: measuring the step's own
    graph draws no random number and writes no gradient."""
    cfg = recipe(DIST_GSKD)
    without = train(cfg, None).state_dict()
    hook = GradientShareBalancerHook(dict(loss_gskd=1.0), interval=2,
                                     weight_range=(1.0, 1.0))
    with_hook = train(cfg, hook).state_dict()
    assert len(hook.history) == 2
    for name, value in without.items():
        assert torch.equal(value, with_hook[name]), name


@pytest.mark.slow
@pytest.mark.parametrize('path, autocast', [(DIST_GSKD, torch.bfloat16),
                                            (CWD_GSKD, None)],
                         ids=['dist-gskd-autocast', 'cwd-gskd-two-optims'])
def test_balances_a_recipe(path, autocast):
    """Under CPU autocast, and with the two-optimizer adversarial CWD
    algorithm: the GSKD weight moves towards its target share."""
    cfg = recipe(path)
    hook = GradientShareBalancerHook(dict(loss_gskd=1.0), interval=1)
    model = train(cfg, hook, steps=3, autocast=autocast)
    shares = [h.share for h in hook.history]
    assert all(s is not None and s > 0 and math.isfinite(s) for s in shares)
    initial = cfg.model.distiller.distill_losses.loss_gskd.loss_weight
    weight = model.distiller.distill_losses['loss_gskd'].loss_weight
    # The authors' GSKD pulls with far less than the task loss: up.
    assert shares[0] < 1 and weight > initial


# ---------------------------------------------------------------------------
# Checkpoints and resume


def test_state_goes_into_the_checkpoint_and_comes_back():
    model = Toy()
    hook = GradientShareBalancerHook(dict(loss_kd=5.0), interval=1)
    run_toy(hook, model, 2)  # half-way to its target
    checkpoint = {}
    hook.before_save_checkpoint(fake_runner(model), checkpoint)
    saved = copy.deepcopy(checkpoint[CHECKPOINT_KEY])

    fresh_model = Toy()
    fresh = GradientShareBalancerHook(dict(loss_kd=5.0), interval=1)
    runner = fake_runner(fresh_model)
    fresh.after_load_checkpoint(runner, checkpoint)
    runner.iter = 2
    fresh.before_train(runner)  # the Runner calls it after resuming
    loss = fresh_model.distiller.distill_losses['loss_kd']
    assert loss.loss_weight == saved['weights']['loss_kd'] == \
        hook.weights['loss_kd']
    assert fresh.state_dict() == saved
    # And both go on alike.
    inputs = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    for h, m in ((hook, model), (fresh, fresh_model)):
        r = fake_runner(m)
        r.iter = 2
        h.before_train_iter(r, 2)
        m(inputs, mode='loss')
        h.after_train_iter(r, 2)
    assert fresh.weights == hook.weights


# ---------------------------------------------------------------------------
# DDP: every rank holds the same weights


WORLD_SIZE = 2


def ddp_worker(rank: int, out: str) -> None:
    from torch.nn.parallel import DistributedDataParallel
    model = Toy()
    wrapped = DistributedDataParallel(model)
    hook = GradientShareBalancerHook(dict(loss_kd=1.0), interval=1)
    runner = fake_runner(wrapped)
    hook.before_train(runner)
    # Each rank its own batch: different local shares.
    inputs = torch.randn(8, 4, generator=torch.Generator().manual_seed(
        10 + rank)) * (1 + 4 * rank)
    local = []
    for i in range(3):
        runner.iter = i
        hook.before_train_iter(runner, i)
        sum(wrapped(inputs, mode='loss').values()).backward()
        hook.after_train_iter(runner, i)
        local.append(dict(hook.last))
    torch.save(
        dict(weights=hook.weights, history=list(hook.history), local=local,
             in_use=model.distiller.distill_losses['loss_kd'].loss_weight),
        osp.join(out, f'rank{rank}.pth'))


@pytest.mark.slow
@pytest.mark.multiprocess
def test_ranks_hold_the_same_weights(tmp_path):
    spawn_with_deadline(ddp_worker, (str(tmp_path), ), WORLD_SIZE, 300)
    ranks = [
        torch.load(tmp_path / f'rank{r}.pth', weights_only=False)
        for r in range(WORLD_SIZE)
    ]
    # The local measurements differ ...
    first = [r['local'][0]['distill.loss_kd'].share for r in ranks]
    assert first[0] != pytest.approx(first[1], rel=1e-2)
    # ... the weights are the same on both ranks, to the bit ...
    assert ranks[0]['weights'] == ranks[1]['weights']
    assert ranks[0]['in_use'] == ranks[1]['in_use']
    assert ranks[0]['history'] == ranks[1]['history']
    # ... and come from the norms averaged over the ranks.
    norms = [r['local'][0] for r in ranks]
    mean = {
        t: sum(n[t].student for n in norms) / WORLD_SIZE
        for t in norms[0]
    }
    share = mean['distill.loss_kd'] / mean['student.decode.loss_ce']
    assert ranks[0]['history'][0].share == pytest.approx(share, rel=1e-9)
