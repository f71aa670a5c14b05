# Copyright (c) gskd-mm contributors. All rights reserved.
"""EvalTeacherDistill: the teacher distils as the GSKD authors run it."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmrazor.registry import MODELS
from torch import nn


from helpers import num_classes_of, random_seg_batch, shrink_recipe

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(__file__)), 'configs', 'gskd')
RECIPE = osp.join(
    CONFIG_DIR, 'dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
    '4xb4-40k_cityscapes-512x1024.py')


def recipe_cfg(algorithm: str = 'EvalTeacherDistill') -> Config:
    cfg = shrink_recipe(Config.fromfile(RECIPE))
    assert cfg.model.type == 'EvalTeacherDistill'  # as shipped
    cfg.model.type = algorithm
    return cfg


def build(cfg: Config) -> nn.Module:
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def models():
    """One model of each algorithm, from the same recipe and seed."""
    return {
        algorithm: build(recipe_cfg(algorithm))
        for algorithm in ('EvalTeacherDistill', 'SingleTeacherDistill')
    }


def teacher_logits_of_two_steps(model: nn.Module, cfg: Config):
    """The teacher logits the distiller recorded in each of two steps."""
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    torch.manual_seed(1)
    batch = random_seg_batch(2, (64, 64), num_classes_of(cfg))
    recorder = model.distiller.teacher_recorders.get_recorder('logits')
    logits = []
    for _ in range(2):
        model.train_step(batch, optim)
        logits.append(recorder.get_record_data().clone())
    return logits


def test_heads_have_dropout(models):
    # What the tests below rely on: the teacher's heads drop out in train.
    teacher = models['EvalTeacherDistill'].teacher
    for head in (teacher.decode_head, teacher.auxiliary_head):
        assert isinstance(head.dropout, nn.Dropout2d)
        assert head.dropout.p > 0


def test_whole_teacher_stays_in_eval_mode(models):
    model = models['EvalTeacherDistill']
    for mode in (True, False, True):
        model.train(mode)
        assert not any(m.training for m in model.teacher.modules())
        assert model.student.training is mode
        assert model.distiller.training is mode


def count_calls(module: nn.Module) -> list:
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize('algorithm, runs_loss_and_auxiliary_head',
                         [('EvalTeacherDistill', False),
                          ('SingleTeacherDistill', True)])
def test_teacher_logits_and_what_the_teacher_runs(
        models, algorithm, runs_loss_and_auxiliary_head):
    model = copy.deepcopy(models[algorithm])
    teacher = model.teacher
    decode = count_calls(teacher.decode_head.conv_seg)
    decode_loss = count_calls(teacher.decode_head.loss_decode)
    auxiliary = count_calls(teacher.auxiliary_head.conv_seg)
    first, second = teacher_logits_of_two_steps(model, recipe_cfg(algorithm))
    assert len(decode) == 2
    assert bool(decode_loss) is runs_loss_and_auxiliary_head
    assert bool(auxiliary) is runs_loss_and_auxiliary_head
    # Dropout off: the same batch gives bit-identical teacher logits; with
    # MMRazor's algorithm, the heads' dropout makes them differ.
    assert torch.equal(first, second) is not runs_loss_and_auxiliary_head


def test_checkpoint_keys_are_those_of_single_teacher_distill(models):
    ours = models['EvalTeacherDistill'].state_dict()
    theirs = models['SingleTeacherDistill'].state_dict()
    assert list(ours) == list(theirs)
    # And a checkpoint of one loads into the other, strictly.
    model = copy.deepcopy(models['EvalTeacherDistill'])
    model.load_state_dict(theirs, strict=True)


def test_trainable_teacher_is_rejected():
    cfg = recipe_cfg()
    cfg.model.teacher_trainable = True
    with pytest.raises(ValueError, match='SingleTeacherDistill'):
        build(cfg)


def test_cfg_path_teacher_with_options_and_local_files(tmp_path):
    """A zoo teacher with other classes, from cfg_options or a file."""
    from mmengine.hub import get_config

    from gskd_mm.models.algorithms import teacher_model_config
    zoo_path = Config.fromfile(RECIPE).model.teacher.cfg_path
    options = {
        'model.decode_head.num_classes': 3,
        'model.auxiliary_head.num_classes': 3
    }
    from_options = teacher_model_config(
        dict(cfg_path=zoo_path, pretrained=False, cfg_options=options))
    own_file = str(tmp_path / 'my_teacher.py')
    zoo = get_config(zoo_path)
    zoo.merge_from_dict(options)
    zoo.dump(own_file)
    from_file = teacher_model_config(dict(cfg_path=own_file))
    for model in (from_options, from_file):
        assert model._scope_ == 'mmseg'
        assert model.decode_head.num_classes == 3
        assert model.backbone.depth == 101
        assert model.data_preprocessor == zoo.data_preprocessor
    with pytest.raises(ValueError, match='teacher_ckpt'):
        teacher_model_config(dict(cfg_path=zoo_path, pretrained=True,
                                  cfg_options=options))

    # EvalTeacherDistill builds it (no download: teacher spelled out by
    # shrink_recipe in other tests; here the algorithm does it itself).
    cfg = recipe_cfg()
    cfg.model.teacher = dict(cfg_path=own_file)
    cfg.model.architecture.decode_head.num_classes = 3
    cfg.model.architecture.auxiliary_head.num_classes = 3
    model = build(cfg)
    assert model.teacher.decode_head.conv_seg.out_channels == 3
    assert type(model.teacher.backbone).__name__ == 'ResNetV1c'
