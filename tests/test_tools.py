# Copyright (c) gskd-mm contributors. All rights reserved.
"""tools/ and gskd_mm.utils.allow_mmengine_checkpoints, on CPU.

* a checkpoint that MMEngine's runner writes (message hub history buffers,
  numpy arrays and scalars) loads with ``weights_only=True`` once
  ``allow_mmengine_checkpoints()`` ran (``import gskd_mm`` runs it), and a
  resume goes on from it; in a fresh interpreter without it, it does not
  load;
* ``tools/model_converters/distill_to_student.py`` turns a (tiny)
  ``SingleTeacherDistill`` checkpoint into an MMSeg student whose
  ``init_model`` + ``inference_model`` logits are the distilled student's;
* ``tools/train.py`` and ``tools/test.py`` start.
"""
import os.path as osp
import subprocess

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmengine.runner import Runner, save_checkpoint
from mmseg.apis import inference_model, init_model

from gskd_mm.utils import allow_mmengine_checkpoints

from helpers import run_with_deadline


REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')
CONVERTER = osp.join(TOOLS, 'model_converters', 'distill_to_student.py')
TIMEOUT = 300  # seconds, per subprocess


def run(*args: str) -> subprocess.CompletedProcess:
    """Run ``python *args`` from outside the repository."""
    return run_with_deadline(
        args, TIMEOUT, python=True, cwd=osp.dirname(REPO))


# ------------------------------------------------- MMEngine checkpoints
class ToyModel(BaseModel):
    """A linear regressor, trained by MMEngine's runner."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        preds = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return dict(loss=((preds - torch.stack(targets))**2).mean())
        return preds


class ToyDataset(torch.utils.data.Dataset):
    metainfo = dict(classes=('value', ))

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        x = torch.tensor([float(index), 1.0])
        return dict(inputs=x, targets=x.sum(0, keepdim=True))


def toy_runner(work_dir: str, max_iters: int, **kwargs) -> Runner:
    """MMEngine's runner with its default hooks (logger, timer, ...)."""
    return Runner(
        model=ToyModel(),
        work_dir=work_dir,
        experiment_name=f'{osp.basename(work_dir)}_{max_iters}',
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(type='CheckpointHook', interval=2,
                            by_epoch=False)),
        default_scope='mmengine',
        **kwargs)


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory) -> str:
    """A checkpoint that MMEngine's runner wrote after 2 iterations."""
    work_dir = str(tmp_path_factory.mktemp('toy_runner'))
    with DefaultScope.overwrite_default_scope('mmengine'):
        toy_runner(work_dir, max_iters=2).train()
    return osp.join(work_dir, 'iter_2.pth')


def test_runner_checkpoint_fails_weights_only_without_allow_list(
        runner_checkpoint):
    # A fresh interpreter: safe globals cannot be taken back in this one.
    code = ('import sys, torch\n'
            'print(sorted(torch.serialization.'
            'get_unsafe_globals_in_checkpoint(sys.argv[1])))\n'
            'torch.load(sys.argv[1], weights_only=True)\n')
    result = run('-c', code, runner_checkpoint)
    assert result.returncode != 0, result.stdout
    assert 'Weights only load failed' in result.stdout, result.stdout
    unsafe = eval(result.stdout.splitlines()[0])
    assert {
        'builtins.getattr', 'mmengine.logging.history_buffer.HistoryBuffer',
        'numpy.dtype', 'numpy.ndarray'
    } <= set(unsafe), unsafe
    # numpy._core (numpy 2) or numpy.core (numpy 1)
    assert any(g.endswith('multiarray._reconstruct') for g in unsafe), unsafe
    assert any(g.endswith('multiarray.scalar') for g in unsafe), unsafe


def test_importing_gskd_mm_allow_lists_runner_checkpoints(runner_checkpoint):
    # What a recipe's `custom_imports` does before MMRazor's own train.py
    # (`mim train mmrazor`) resumes: nothing else is called.
    code = ('import sys, torch, gskd_mm\n'
            'ckpt = torch.load(sys.argv[1], weights_only=True)\n'
            'print(sorted(ckpt["message_hub"]["log_scalars"]))\n')
    result = run('-c', code, runner_checkpoint)
    assert result.returncode == 0, result.stdout
    assert 'train/loss' in result.stdout


def test_runner_checkpoint_loads_weights_only(runner_checkpoint):
    assert allow_mmengine_checkpoints()
    assert torch.serialization.get_unsafe_globals_in_checkpoint(
        runner_checkpoint) == []
    checkpoint = torch.load(runner_checkpoint, weights_only=True)
    reference = torch.load(runner_checkpoint, weights_only=False)
    scalars = checkpoint['message_hub']['log_scalars']
    assert isinstance(scalars['train/loss'], HistoryBuffer)
    for name, buffer in reference['message_hub']['log_scalars'].items():
        np.testing.assert_array_equal(scalars[name].data[0], buffer.data[0])
        np.testing.assert_array_equal(scalars[name].data[1], buffer.data[1])
        assert scalars[name].mean() == buffer.mean()
    eta = checkpoint['message_hub']['runtime_info']['eta']
    assert isinstance(eta, np.float64)  # a numpy scalar
    assert checkpoint['meta']['dataset_meta'] == ToyDataset.metainfo


def test_allow_list_is_idempotent_and_keeps_getattr_closed(tmp_path):
    allow_mmengine_checkpoints()
    safe = torch.serialization.get_safe_globals()
    allow_mmengine_checkpoints()
    assert torch.serialization.get_safe_globals() == safe
    # HistoryBuffer's statistics pickle as getattr(HistoryBuffer, name);
    # getattr resolves those, not any other attribute.
    path = str(tmp_path / 'getattr.pth')
    torch.save(dict(method=HistoryBuffer.mean), path)
    assert torch.load(path, weights_only=True)['method'] is HistoryBuffer.mean
    torch.save(dict(method=HistoryBuffer.update), path)
    with pytest.raises(Exception, match='refuses getattr'):
        torch.load(path, weights_only=True)


def test_runner_resumes_weights_only(runner_checkpoint, tmp_path):
    allow_mmengine_checkpoints()
    with DefaultScope.overwrite_default_scope('mmengine'):
        runner = toy_runner(
            str(tmp_path),
            max_iters=3,
            resume=True,
            load_from=runner_checkpoint)
        runner.train()
    assert runner.iter == 3
    # The losses of iterations 1-2 came back with the message hub.
    saved = torch.load(runner_checkpoint, weights_only=True)
    saved_losses = saved['message_hub']['log_scalars']['train/loss'].data[0]
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(saved_losses) == 2 and len(losses) == 3
    np.testing.assert_array_equal(losses[:2], saved_losses)


# ------------------------------------------------------------ converter
def tiny_segmentor(width: int, scope: bool = True) -> dict:
    """An MMSeg EncoderDecoder small enough for a CPU test."""
    model = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            size=(32, 32),
            pad_val=0,
            seg_pad_val=255),
        pretrained=None,
        backbone=dict(
            type='ResNetV1c',
            depth=18,
            stem_channels=width,
            base_channels=width,
            num_stages=4,
            out_indices=(3, ),
            dilations=(1, 1, 2, 4),
            strides=(1, 2, 1, 1),
            norm_cfg=dict(type='BN', requires_grad=True),
            contract_dilation=True),
        decode_head=dict(
            type='FCNHead',
            in_channels=8 * width,
            in_index=0,
            channels=width,
            num_convs=1,
            concat_input=False,
            num_classes=4,
            norm_cfg=dict(type='BN', requires_grad=True),
            align_corners=False,
            loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
        train_cfg=dict(),
        test_cfg=dict(mode='whole'))
    if scope:
        model['_scope_'] = 'mmseg'
    return model


def distill_config() -> Config:
    """A distillation config as the project writes them, scaled down."""
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='PackSegInputs')
    ]
    test_dataloader = dict(
        batch_size=1,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(
            type='BaseSegDataset',
            data_root='data/tiny',
            data_prefix=dict(img_path='img', seg_map_path='ann'),
            pipeline=test_pipeline))
    feat = dict(type='ModuleOutputs', source='decode_head.convs')
    return Config(
        dict(
            default_scope='mmrazor',
            custom_imports=dict(imports=['gskd_mm']),
            model=dict(
                _scope_='mmrazor',
                type='SingleTeacherDistill',
                architecture=tiny_segmentor(width=4),
                teacher=tiny_segmentor(width=8),
                distiller=dict(
                    type='ConfigurableDistiller',
                    student_recorders=dict(feat=feat),
                    teacher_recorders=dict(feat=feat),
                    connectors=dict(
                        projector=dict(
                            type='GSKDProjector',
                            in_channels=4,
                            out_channels=8,
                            norm_cfg=dict(type='BN'))),
                    distill_losses=dict(
                        loss_cwd=dict(
                            type='ChannelWiseDivergence',
                            tau=1.0,
                            loss_weight=1.0)),
                    loss_forward_mappings=dict(
                        loss_cwd=dict(
                            preds_S=dict(
                                from_student=True,
                                recorder='feat',
                                connector='projector'),
                            preds_T=dict(from_student=False,
                                         recorder='feat'))))),
            test_pipeline=test_pipeline,
            test_dataloader=test_dataloader,
            test_evaluator=dict(type='IoUMetric', iou_metrics=['mIoU']),
            test_cfg=dict(type='TestLoop'),
            train_cfg=dict(type='IterBasedTrainLoop', max_iters=1),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01))))


def seg_batch(num: int, seed: int) -> dict:
    """Random images and labels, as a dataloader gives them."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(num):
        inputs.append(
            torch.randint(
                0, 256, (3, 32, 32), generator=gen, dtype=torch.uint8))
        sample = SegDataSample(
            metainfo=dict(img_shape=(32, 32), ori_shape=(32, 32)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 4, (1, 32, 32), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_student_converter_keeps_logits(tmp_path):
    from mmrazor.registry import MODELS
    cfg = distill_config()
    with DefaultScope.overwrite_default_scope('mmrazor'):
        torch.manual_seed(0)
        distill = MODELS.build(cfg.model)
    # One distillation step in train mode: BN statistics move away from
    # their initial values, so that the student's buffers must carry over.
    distill.train()
    data = distill.data_preprocessor(seg_batch(2, seed=1), True)
    losses = distill(**data, mode='loss')
    assert 'distill.loss_cwd' in losses
    state_dict = distill.state_dict()
    assert any(k.startswith('teacher.') for k in state_dict)
    assert any(k.startswith('distiller.connectors.') for k in state_dict)

    config = str(tmp_path / 'distill.py')
    cfg.dump(config)
    dataset_meta = dict(
        classes=('a', 'b', 'c', 'd'),
        palette=[[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]])
    message_hub = MessageHub('converter_test')
    message_hub.update_scalar('train/loss', 1.5)
    checkpoint = str(tmp_path / 'iter_1.pth')
    save_checkpoint(
        dict(
            meta=dict(iter=1, dataset_meta=dataset_meta),
            state_dict=state_dict,
            message_hub=message_hub.state_dict()), checkpoint)

    out_dir = str(tmp_path / 'student')
    result = run(CONVERTER, config, checkpoint, out_dir)
    assert result.returncode == 0, result.stdout
    student_ckpt = osp.join(out_dir, 'student.pth')
    student_cfg = osp.join(out_dir, 'student.py')

    converted = torch.load(student_ckpt, weights_only=True)
    assert set(converted) == {'meta', 'state_dict'}
    assert converted['meta']['dataset_meta'] == dataset_meta
    assert not any(
        k.startswith(('teacher.', 'distiller.', 'architecture.'))
        for k in converted['state_dict'])
    student_state = distill.architecture.state_dict()
    assert converted['state_dict'].keys() == student_state.keys()
    for key, value in student_state.items():
        assert torch.equal(converted['state_dict'][key], value), key

    written = Config.fromfile(student_cfg)
    assert written.default_scope == 'mmseg'
    assert written.model.type == 'EncoderDecoder'
    for key in ('test_pipeline', 'test_dataloader', 'test_evaluator',
                'test_cfg'):
        assert written[key] == cfg[key], key
    assert 'train_cfg' not in written and 'optim_wrapper' not in written

    student = init_model(student_cfg, student_ckpt, device='cpu')
    assert student.dataset_meta['classes'] == dataset_meta['classes']
    img = np.random.default_rng(2).integers(
        0, 256, (32, 32, 3), dtype=np.uint8)
    result = inference_model(student, img)
    arch = distill.architecture.eval()
    arch.cfg = student.cfg  # the same test pipeline
    expected = inference_model(arch, img)
    assert torch.equal(result.seg_logits.data, expected.seg_logits.data)
    assert torch.equal(result.pred_sem_seg.data, expected.pred_sem_seg.data)


# ---------------------------------------------------------------- tools
@pytest.mark.parametrize('tool, options', [
    ('train.py', ('--resume', '--amp', '--cfg-options', '--launcher',
                  '--work-dir', '--local-rank')),
    ('test.py', ('checkpoint', '--out', '--show-dir', '--cfg-options',
                 '--launcher', '--work-dir')),
])
def test_tool_help(tool, options):
    result = run(osp.join(TOOLS, tool), '--help')
    assert result.returncode == 0, result.stdout
    for option in options:
        assert option in result.stdout, (option, result.stdout)
