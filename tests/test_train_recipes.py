# Copyright (c) gskd-mm contributors. All rights reserved.
"""Real recipes train, evaluate, checkpoint and resume on tiny datasets.

Each dataset is written with its real layout and file naming (see
``gskd_mm.testing.data``) and read by MMSeg's own dataset class and the
recipe's own pipelines; the recipes are changed only where the CPU needs it
(``shrink_recipe``: crop, data root, no downloads, no loader workers) and in
their schedule (batch, iterations, intervals). Runs go through every entry
point: ``mim train mmrazor`` (MMRazor's own train.py, which imports MMRazor
before any ``gskd_mm`` import: the start-up hook must make it work),
``tools/train.py``, an in-process ``Runner``, and ``tools/train.py`` under
``torch.distributed.run`` with two gloo processes.
"""
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Sequence, Tuple

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from gskd_mm.testing import (make_ade20k, make_cityscapes, make_coco_stuff164k,
                             make_voc12aug)

from helpers import free_port, run_with_deadline, shrink_recipe


REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(REPO, 'configs', 'gskd')
TRAIN_PY = osp.join(REPO, 'tools', 'train.py')
TEST_PY = osp.join(REPO, 'tools', 'test.py')
DIST_TRAIN_SH = osp.join(REPO, 'tools', 'dist_train.sh')
MIM = osp.join(osp.dirname(sys.executable), 'mim')
TIMEOUT = 600  # seconds, per subprocess
# Seconds a torchrun rank's collective waits for the other: a stuck one
# fails the run within minutes, before TIMEOUT.
COLLECTIVE_TIMEOUT = 120

CROP = (64, 64)
BATCH = 2
INTERVAL = 2  # validation, checkpoint
FIRST_ITERS = 4  # the first run saves iter_2 and iter_4
RESUMED_ITERS = 6  # the resumed run goes on from iter_4

CITYSCAPES_RECIPE = ('dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
                     '4xb4-40k_cityscapes-512x1024.py')
ADE20K_RECIPE = ('cwd-gskd_pspnet_r101-d8_pspnet_r18-d8_'
                 '4xb4-80k_ade20k-512x512.py')
VOC_RECIPE = ('gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
              '4xb4-40k_voc12aug-512x512.py')
COCO_STUFF_RECIPE = ('dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
                     '4xb4-80k_coco-stuff164k-512x512.py')
CROSS_STRIDE_RECIPE = ('dist-gskd_deeplabv3_r101-d8_segformer_mit-b0_'
                       '8xb1-160k_cityscapes-1024x1024.py')
DDP_RECIPE = ('cwd-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
              '4xb2-80k_cityscapes-512x1024.py')
BALANCED_DIST_RECIPE = ('dist-gskd-row-t1-bal_deeplabv3_r101-d8_'
                        'deeplabv3_r18-d8_4xb4-40k_cityscapes-512x1024.py')
BALANCED_CWD_RECIPE = ('cwd-gskd-row-t1-bal_deeplabv3_r101-d8_'
                       'deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py')
# The balancer measures and updates every iteration in these short runs,
# and GSKD samples every labelled pixel (an untrained teacher is right on
# none, and GSKD would not reach the student: its weight would stay).
BALANCE_EVERY_STEP = {
    'custom_hooks.0.interval': 1,
    'model.distiller.distill_losses.loss_gskd.valid_mask': 'labeled'
}


# --------------------------------------------------------------- helpers
def write_recipe(name: str,
                 data_root: str,
                 out_dir: str,
                 sync_bn_to_bn: bool = False) -> Tuple[str, List[str]]:
    """Dump the CPU-sized recipe; return its path and distill loss names."""
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    shrink_recipe(
        cfg, crop=CROP, sync_bn_to_bn=sync_bn_to_bn, data_root=data_root)
    path = osp.join(out_dir, name)
    cfg.dump(path)
    losses = [f'distill.{k}' for k in cfg.model.distiller.distill_losses]
    if 'discriminator' in cfg.model:  # adversarial distillation
        losses += ['distill.loss_adv_g', 'distill.loss_adv_d']
    return path, sorted(losses)


def schedule(max_iters: int) -> Dict[str, int]:
    return {
        'train_dataloader.batch_size': BATCH,
        'train_cfg.max_iters': max_iters,
        'train_cfg.val_interval': INTERVAL,
        'default_hooks.checkpoint.interval': INTERVAL,
        'default_hooks.logger.interval': 1,
    }


def cfg_options(max_iters: int, **extra) -> List[str]:
    """``--cfg-options`` arguments of the schedule (and ``extra``)."""
    options = {**schedule(max_iters), **extra}
    return ['--cfg-options'] + [f'{k}={v}' for k, v in options.items()]


def run(cmd: Sequence[str], **env: str) -> subprocess.CompletedProcess:
    result = run_with_deadline(
        cmd, TIMEOUT, cwd=REPO, env={
            **os.environ,
            **env
        })
    assert result.returncode == 0, (
        f'{" ".join(cmd)} exited with {result.returncode}:\n'
        f'{result.stdout[-6000:]}')
    return result


def run_dirs(work_dir: str) -> List[str]:
    """The per-run (timestamp) folders of a work dir, oldest first."""
    return sorted(
        d for d in glob.glob(osp.join(work_dir, '*'))
        if osp.isdir(d) and osp.isdir(osp.join(d, 'vis_data')))


def read_run(run_dir: str) -> Tuple[str, List[dict], List[dict]]:
    """A run's log text, and its train and val records (scalars.json)."""
    logs = sorted(glob.glob(osp.join(run_dir, '*.log')))
    assert logs, f'no log in {run_dir}'
    with open(logs[0]) as f:
        text = f.read()
    with open(osp.join(run_dir, 'vis_data', 'scalars.json')) as f:
        records = [json.loads(line) for line in f if line.strip()]
    train = [r for r in records if 'loss' in r]
    val = [r for r in records if 'mIoU' in r]
    return text, train, val


def check_train_records(train: List[dict], steps: Sequence[int],
                        distill_losses: Sequence[str]) -> None:
    assert [r['step'] for r in train] == list(steps)
    for record in train:
        for key in ('loss', *distill_losses):
            assert key in record, (key, sorted(record))
            assert math.isfinite(record[key]), (key, record)


def check_val_records(val: List[dict], steps: Sequence[int]) -> None:
    assert [r['step'] for r in val] == list(steps)
    for record in val:
        for key in ('mIoU', 'aAcc', 'mAcc'):
            assert math.isfinite(record[key]), record
            assert 0 <= record[key] <= 100, record


def check_first_run(work_dir: str, distill_losses: Sequence[str]) -> None:
    """Trained FIRST_ITERS, evaluated and saved every INTERVAL."""
    (run_dir, ) = run_dirs(work_dir)
    text, train, val = read_run(run_dir)
    check_train_records(train, range(1, FIRST_ITERS + 1), distill_losses)
    check_val_records(val, range(INTERVAL, FIRST_ITERS + 1, INTERVAL))
    assert 'mIoU' in text
    for it in range(INTERVAL, FIRST_ITERS + 1, INTERVAL):
        assert osp.isfile(osp.join(work_dir, f'iter_{it}.pth'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip().endswith(f'iter_{FIRST_ITERS}.pth')


def check_resumed_run(work_dir: str, distill_losses: Sequence[str]) -> None:
    """The last run went on from iter FIRST_ITERS, not from 0."""
    run_dir = run_dirs(work_dir)[-1]
    text, train, val = read_run(run_dir)
    assert f'resumed epoch: 0, iter: {FIRST_ITERS}' in text
    check_train_records(train, range(FIRST_ITERS + 1, RESUMED_ITERS + 1),
                        distill_losses)
    assert f'Iter(train) [{FIRST_ITERS + 1}/{RESUMED_ITERS}]' in text
    assert f'Iter(train) [1/{RESUMED_ITERS}]' not in text
    check_val_records(val, [RESUMED_ITERS])
    assert osp.isfile(osp.join(work_dir, f'iter_{RESUMED_ITERS}.pth'))


@pytest.fixture
def work_dir(tmp_path, monkeypatch):
    """A work dir whose checkpoints (~0.5 GB each) go after the test.

    Downloads (torch.hub, MMEngine's ``open-mmlab://`` and ``http``
    checkpoints) would land in a fresh ``TORCH_HOME``: it must stay empty.
    """
    torch_home = tmp_path / 'torch_home'
    monkeypatch.setenv('TORCH_HOME', str(torch_home))  # subprocesses too
    path = tmp_path / 'work_dir'
    yield str(path)
    for ckpt in glob.glob(osp.join(str(path), '**', '*.pth'), recursive=True):
        os.remove(ckpt)
    downloaded = glob.glob(str(torch_home / '**' / '*'), recursive=True)
    assert not downloaded, f'downloaded: {downloaded}'


# ----------------------------------------------------------------- tests
def test_dataset_layouts_are_read_by_mmseg(tmp_path):
    """The generated trees are what MMSeg's dataset configs index."""
    from mmseg.registry import DATASETS
    roots = dict(
        cityscapes=make_cityscapes(str(tmp_path / 'cityscapes')),
        ade20k=make_ade20k(str(tmp_path / 'ade')),
        voc12aug=make_voc12aug(str(tmp_path / 'data')),
        coco_stuff164k=make_coco_stuff164k(str(tmp_path / 'coco')))
    recipes = dict(
        cityscapes=CITYSCAPES_RECIPE,
        ade20k=ADE20K_RECIPE,
        voc12aug=VOC_RECIPE,
        coco_stuff164k=COCO_STUFF_RECIPE)
    expected_len = dict(
        cityscapes=(4, 2), ade20k=(4, 2), voc12aug=(4, 2),
        coco_stuff164k=(4, 2))
    for name, recipe in recipes.items():
        cfg = shrink_recipe(
            Config.fromfile(osp.join(CONFIG_DIR, recipe)),
            crop=CROP,
            data_root=roots[name])
        for loader, length in zip(('train_dataloader', 'val_dataloader'),
                                  expected_len[name]):
            dataset = DATASETS.build(cfg[loader].dataset)
            assert len(dataset) == length, (name, loader)
            for i in range(length):
                info = dataset.get_data_info(i)
                assert osp.isfile(info['img_path']), info
                assert osp.isfile(info['seg_map_path']), info
            sample = dataset[0]
            labels = set(sample['data_samples'].gt_sem_seg.data.unique()
                         .tolist()) - {255}
            num_classes = cfg.model.architecture.decode_head.num_classes
            assert labels and max(labels) < num_classes, (name, labels)


def test_shrunk_teacher_is_the_cfg_path_model():
    """shrink_recipe spells the teacher out; it is still the zoo model."""
    from mmengine.hub import get_model
    from mmengine.registry import init_default_scope
    from mmrazor.registry import MODELS
    cfg = Config.fromfile(osp.join(CONFIG_DIR, VOC_RECIPE))
    zoo = get_model(**cfg.model.teacher)
    shrink_recipe(cfg, crop=CROP)
    assert 'cfg_path' not in cfg.model.teacher
    assert cfg.model.teacher.pretrained is None
    assert cfg.model.teacher.backbone.init_cfg is None
    init_default_scope('mmrazor')
    teacher = MODELS.build(cfg.model.teacher)

    def layers(model):  # every module and its settings, init_cfg aside
        return [(name, type(m), m.extra_repr())
                for name, m in model.named_modules()]

    assert layers(teacher) == layers(zoo)
    assert {k: v.shape for k, v in teacher.state_dict().items()} == \
        {k: v.shape for k, v in zoo.state_dict().items()}

    def pretrained_inits(model):  # what init_weights() would download
        found = []
        for name, m in model.named_modules():
            init_cfg = getattr(m, 'init_cfg', None) or []
            for one in init_cfg if isinstance(init_cfg, list) else [init_cfg]:
                if one.get('type') == 'Pretrained':
                    found.append((name, one['checkpoint']))
        return found

    assert pretrained_inits(zoo) == [('backbone',
                                      'open-mmlab://resnet101_v1c')]
    assert pretrained_inits(teacher) == []


@pytest.mark.slow
def test_cityscapes_recipe_with_mim_train_mmrazor(tmp_path, work_dir):
    """``mim train mmrazor``: MMRazor's train.py, gskd_mm via the config."""
    assert osp.isfile(MIM), MIM
    root = make_cityscapes(str(tmp_path / 'cityscapes'))
    config, losses = write_recipe(CITYSCAPES_RECIPE, root, str(tmp_path))
    mim = [
        MIM, 'train', 'mmrazor', config, '--gpus', '0', '--launcher', 'none',
        '--work-dir', work_dir
    ]
    result = run(mim + cfg_options(FIRST_ITERS))
    assert 'Training finished successfully' in result.stdout
    check_first_run(work_dir, losses)

    run(mim + ['--resume'] + cfg_options(RESUMED_ITERS))
    check_resumed_run(work_dir, losses)


@pytest.mark.slow
def test_ade20k_recipe_with_tools_train(tmp_path, work_dir):
    """``python tools/train.py``, then ``--resume``, then tools/test.py."""
    assert osp.isfile(TRAIN_PY), TRAIN_PY
    root = make_ade20k(str(tmp_path / 'ade'))
    config, losses = write_recipe(ADE20K_RECIPE, root, str(tmp_path))
    train = [sys.executable, TRAIN_PY, config, '--work-dir', work_dir]
    run(train + cfg_options(FIRST_ITERS))
    check_first_run(work_dir, losses)

    run(train + ['--resume'] + cfg_options(RESUMED_ITERS))
    check_resumed_run(work_dir, losses)

    # The distillation checkpoint tests its student on the val split.
    checkpoint = osp.join(work_dir, f'iter_{RESUMED_ITERS}.pth')
    test_dir = osp.join(work_dir, 'test')
    result = run([sys.executable, TEST_PY, config, checkpoint, '--work-dir',
                  test_dir])
    (run_dir, ) = glob.glob(osp.join(test_dir, '*', ''))
    (metrics_file, ) = glob.glob(osp.join(run_dir, '*.json'))
    with open(metrics_file) as f:
        metrics = json.load(f)
    assert 0 <= metrics['mIoU'] <= 100, metrics
    assert 'mIoU' in result.stdout
    # The same weights as the last validation of training: the same mIoU.
    _, _, val = read_run(run_dirs(work_dir)[-1])
    assert metrics['mIoU'] == pytest.approx(val[-1]['mIoU'], abs=0.01)


@pytest.mark.slow
def test_voc12aug_recipe_with_runner(tmp_path, work_dir):
    """In process: ``Runner.from_cfg``, then ``resume=True`` + load_from."""
    root = make_voc12aug(str(tmp_path / 'data'))
    config, losses = write_recipe(VOC_RECIPE, root, str(tmp_path))

    def runner_for(max_iters: int, **extra) -> Runner:
        cfg = Config.fromfile(config)
        cfg.merge_from_dict(schedule(max_iters))
        cfg.work_dir = work_dir
        # MMEngine's visualizer is one instance per name and process: a
        # fresh name, or this run writes scalars.json into an earlier
        # run's folder.
        cfg.visualizer.name = f'visualizer:{work_dir}:{max_iters}'
        cfg.update(extra)
        return Runner.from_cfg(cfg)

    runner = runner_for(FIRST_ITERS)
    runner.train()
    assert runner.iter == FIRST_ITERS
    assert math.isfinite(runner.message_hub.get_scalar('val/mIoU').current())
    check_first_run(work_dir, losses)

    checkpoint = osp.join(work_dir, f'iter_{FIRST_ITERS}.pth')
    runner = runner_for(RESUMED_ITERS, resume=True, load_from=checkpoint)
    runner.train()
    assert runner.iter == RESUMED_ITERS
    check_resumed_run(work_dir, losses)


@pytest.mark.slow
def test_cross_stride_recipe_with_runner(tmp_path, work_dir):
    """A stride-8 DeepLabV3 teaches a stride-4 SegFormer (AdamW, MMSeg's
    SegFormer optimizer settings): trains, evaluates and saves."""
    root = make_cityscapes(str(tmp_path / 'cityscapes'))
    config, losses = write_recipe(CROSS_STRIDE_RECIPE, root, str(tmp_path))
    cfg = Config.fromfile(config)
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    cfg.merge_from_dict(schedule(FIRST_ITERS))
    cfg.work_dir = work_dir
    cfg.visualizer.name = f'visualizer:{work_dir}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == FIRST_ITERS
    check_first_run(work_dir, losses)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_process_gloo_training_with_dist_train_sh(tmp_path, work_dir):
    """``tools/dist_train.sh``: torchrun, two CPU processes (gloo).

    Every SyncBN becomes BN: torch's DDP refuses a CPU model holding any
    SyncBN, even the frozen teacher's (eval mode) and the GSKD projector's
    (SyncBN by default, not written in the recipes).
    """
    assert osp.isfile(DIST_TRAIN_SH), DIST_TRAIN_SH
    root = make_cityscapes(str(tmp_path / 'cityscapes'))
    config, losses = write_recipe(
        DDP_RECIPE, root, str(tmp_path), sync_bn_to_bn=True)
    cfg = Config.fromfile(config)
    assert cfg.model.architecture.backbone.norm_cfg.type == 'BN'
    assert cfg.model.teacher.backbone.norm_cfg.type == 'BN'
    connectors = cfg.model.distiller.connectors
    assert connectors.gskd_projector.norm_cfg.type == 'BN'
    assert cfg.model.discriminator.norm_cfg.type == 'BN'
    # Both steps (student, discriminator) run under DDP.
    assert cfg.model_wrapper_cfg.type == \
        'mmrazor.AdversarialDistillDataParallel'
    port = free_port()
    iters = INTERVAL
    options = cfg_options(
        iters, **{
            'env_cfg.dist_cfg.backend': 'gloo',
            'env_cfg.dist_cfg.timeout': COLLECTIVE_TIMEOUT,
            # DEBUG: every rank writes its own log file.
            'log_level': 'DEBUG',
        })
    cmd = ['bash', DIST_TRAIN_SH, config, '2', '--work-dir', work_dir, *options]
    # torchrun and python of this environment, as `make` or an activated
    # environment would find them.
    path = f'{osp.dirname(sys.executable)}{os.pathsep}{os.environ["PATH"]}'
    run(cmd, OMP_NUM_THREADS='1', PORT=str(port), PATH=path)

    assert osp.isfile(osp.join(work_dir, f'iter_{iters}.pth'))
    (run_dir, ) = run_dirs(work_dir)
    rank_logs = {}
    for rank in (0, 1):
        (path, ) = glob.glob(osp.join(run_dir, f'*_rank{rank}.log'))
        with open(path) as f:
            rank_logs[rank] = f.read()
    assert 'Distributed training: True' in rank_logs[0]
    assert 'GPU number: 2' in rank_logs[0]
    for rank, text in rank_logs.items():
        # Every rank trained every iteration and logged its distill losses.
        for it in range(1, iters + 1):
            lines = [
                line for line in text.splitlines()
                if f'Iter(train) [{it}/{iters}]' in line
            ]
            assert len(lines) == 1, (rank, it)
            for loss in losses:
                assert f' {loss}: ' in lines[0], (rank, loss, lines[0])
    _, train, val = read_run(run_dir)
    check_train_records(train, range(1, iters + 1), losses)
    check_val_records(val, [iters])


# ------------------------------------------------------ balanced recipes
def balancer_state(checkpoint: str) -> dict:
    import torch
    from gskd_mm.engine.hooks.gradient_share_balancer_hook import \
        CHECKPOINT_KEY
    return torch.load(checkpoint, map_location='cpu',
                      weights_only=False)[CHECKPOINT_KEY]


@pytest.mark.slow
def test_balanced_recipe_with_mim_train_mmrazor_and_resume(tmp_path,
                                                           work_dir):
    """``mim train mmrazor`` runs the recipe's balancer; its state is in
    the checkpoints, and ``--resume`` goes on from it (one update per
    iteration in all, not restarted)."""
    root = make_cityscapes(str(tmp_path / 'cityscapes'))
    config, losses = write_recipe(BALANCED_DIST_RECIPE, root, str(tmp_path))
    mim = [
        MIM, 'train', 'mmrazor', config, '--gpus', '0', '--launcher', 'none',
        '--work-dir', work_dir
    ]
    run(mim + cfg_options(FIRST_ITERS, **BALANCE_EVERY_STEP))
    check_first_run(work_dir, losses)
    first = balancer_state(osp.join(work_dir, f'iter_{FIRST_ITERS}.pth'))
    assert first['updates'] == FIRST_ITERS
    assert first['targets'] == {'loss_gskd': 1.0}
    assert first['weights'] != first['initial']  # it moved

    run(mim + ['--resume'] +
        cfg_options(RESUMED_ITERS, **BALANCE_EVERY_STEP))
    check_resumed_run(work_dir, losses)
    resumed = balancer_state(osp.join(work_dir, f'iter_{RESUMED_ITERS}.pth'))
    assert resumed['updates'] == RESUMED_ITERS
    assert resumed['initial'] == first['initial']
    _, train, _ = read_run(run_dirs(work_dir)[-1])
    assert all('balancer/weight/loss_gskd' in r for r in train)


@pytest.mark.slow
def test_balanced_recipe_resumes_its_weights_exactly(tmp_path, work_dir):
    """In process: the GSKD weight in use at the first resumed iteration is
    the one the checkpoint saved, to the last bit."""
    from mmengine.hooks import Hook
    root = make_cityscapes(str(tmp_path / 'cityscapes'))
    config, _ = write_recipe(BALANCED_DIST_RECIPE, root, str(tmp_path))
    used = {}

    class RecordWeight(Hook):

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            loss = runner.model.distiller.distill_losses['loss_gskd']
            used[runner.iter] = loss.loss_weight

    def runner_for(max_iters: int, **extra) -> Runner:
        cfg = Config.fromfile(config)
        cfg.merge_from_dict({**schedule(max_iters), **BALANCE_EVERY_STEP,
                             'custom_hooks.0.warmup_iters': 0})
        cfg.work_dir = work_dir
        cfg.visualizer.name = f'visualizer:{work_dir}:{max_iters}'
        cfg.update(extra)
        runner = Runner.from_cfg(cfg)
        # After the balancer (NORMAL): the weight the step uses.
        runner.register_hook(RecordWeight(), priority='LOWEST')
        return runner

    runner_for(FIRST_ITERS).train()
    saved = balancer_state(osp.join(work_dir, f'iter_{FIRST_ITERS}.pth'))
    assert used[FIRST_ITERS - 1] != saved['weights']['loss_gskd']  # moved
    used.clear()
    runner_for(RESUMED_ITERS, resume=True).train()
    assert min(used) == FIRST_ITERS
    assert used[FIRST_ITERS] == saved['weights']['loss_gskd']


@pytest.mark.slow
@pytest.mark.multiprocess
def test_balanced_two_process_gloo_training_holds_one_weight(
        tmp_path, work_dir):
    """``tools/dist_train.sh``, two CPU processes, the two-optimizer CWD
    recipe balanced: both ranks log the same GSKD weight every step."""
    root = make_cityscapes(str(tmp_path / 'cityscapes'))
    config, losses = write_recipe(
        BALANCED_CWD_RECIPE, root, str(tmp_path), sync_bn_to_bn=True)
    iters = INTERVAL
    options = cfg_options(
        iters, **{
            'env_cfg.dist_cfg.backend': 'gloo',
            'env_cfg.dist_cfg.timeout': COLLECTIVE_TIMEOUT,
            'log_level': 'DEBUG',
            **BALANCE_EVERY_STEP
        })
    cmd = [
        'bash', DIST_TRAIN_SH, config, '2', '--work-dir', work_dir, *options
    ]
    path = f'{osp.dirname(sys.executable)}{os.pathsep}{os.environ["PATH"]}'
    run(cmd, OMP_NUM_THREADS='1', PORT=str(free_port()), PATH=path)
    (run_dir, ) = run_dirs(work_dir)
    weights = {}
    for rank in (0, 1):
        (log, ) = glob.glob(osp.join(run_dir, f'*_rank{rank}.log'))
        with open(log) as f:
            weights[rank] = [
                line.split('balancer/weight/loss_gskd: ')[1].split()[0]
                for line in f if 'balancer/weight/loss_gskd: ' in line
            ]
    assert len(weights[0]) == iters
    assert weights[0] == weights[1]
    state = balancer_state(osp.join(work_dir, f'iter_{iters}.pth'))
    assert state['updates'] == iters
