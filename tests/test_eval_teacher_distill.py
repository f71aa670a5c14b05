# Copyright (c) gskd-mm contributors. All rights reserved.
"""EvalTeacherDistill: the teacher distils as the GSKD authors run it."""
import copy
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope
from mmrazor.registry import MODELS
from torch import nn

from gskd_mm.testing import generated_batch

from helpers import num_classes_of, shrink_recipe


CONFIG_DIR = osp.join(osp.dirname(osp.dirname(__file__)), 'configs', 'gskd')
RECIPE = osp.join(
    CONFIG_DIR, 'dist-gskd_deeplabv3_r101-d8_deeplabv3_r18-d8_'
    '4xb4-40k_cityscapes-512x1024.py')


def recipe_cfg(algorithm: str = 'EvalTeacherDistill') -> Config:
    cfg = shrink_recipe(Config.fromfile(RECIPE))
    assert cfg.model.type == 'EvalTeacherDistill'  # as shipped
    cfg.model.type = algorithm
    if algorithm == 'SingleTeacherDistill':
        # It runs the teacher's auxiliary head anyway (loss mode).
        assert cfg.model.pop('teacher_auxiliary')
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
    batch = generated_batch(2, (64, 64), num_classes_of(cfg))
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
    # The recipe distils auxiliary logits: ours runs the teacher's
    # auxiliary head for them (teacher_auxiliary), without its loss.
    model = copy.deepcopy(models[algorithm])
    teacher = model.teacher
    decode = count_calls(teacher.decode_head.conv_seg)
    decode_loss = count_calls(teacher.decode_head.loss_decode)
    auxiliary = count_calls(teacher.auxiliary_head.conv_seg)
    first, second = teacher_logits_of_two_steps(model, recipe_cfg(algorithm))
    assert len(decode) == 2
    assert bool(decode_loss) is runs_loss_and_auxiliary_head
    assert len(auxiliary) == 2
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


# ------------------------------------------------- teacher auxiliary heads
def test_teacher_auxiliary_logits_are_its_eval_forward(models):
    """The recorded teacher auxiliary logits: its auxiliary head, in eval
    mode, on the features its decode head read; no gradient, no loss."""
    model = copy.deepcopy(models['EvalTeacherDistill'])
    assert model.teacher_auxiliary
    cfg = recipe_cfg()
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    torch.manual_seed(1)
    batch = generated_batch(2, (64, 64), num_classes_of(cfg))
    losses = model.train_step(batch, optim)
    assert 'distill.loss_dist_aux' in losses
    assert float(losses['distill.loss_dist_aux']) > 0
    recorded = model.distiller.teacher_recorders.get_recorder(
        'aux_logits').get_record_data()
    assert not recorded.requires_grad
    assert not any(m.training for m in model.teacher.modules())
    data = model.data_preprocessor(batch, True)
    with torch.no_grad():
        feats = model.teacher.extract_feat(data['inputs'])
        expected = model.teacher.auxiliary_head.conv_seg(
            model.teacher.auxiliary_head.convs(
                feats[model.teacher.auxiliary_head.in_index]))
    torch.testing.assert_close(recorded, expected)
    # The student's auxiliary logits, recorded in its loss forward, are
    # what the loss compares them with.
    student = model.distiller.student_recorders.get_recorder(
        'aux_logits').get_record_data()
    assert student.shape == recorded.shape and student.requires_grad


def test_teacher_auxiliary_needs_a_head_and_the_flag():
    cfg = recipe_cfg()
    cfg.model.teacher_auxiliary = False
    with pytest.raises(ValueError, match='set teacher_auxiliary=True'):
        build(cfg)
    # A teacher without one (e.g. SegFormer), only the flag left on.
    cfg = recipe_cfg()
    cfg.model.teacher.auxiliary_head = None
    distiller = cfg.model.distiller
    for key in ('student_recorders', 'teacher_recorders'):
        distiller[key].pop('aux_logits')
    distiller.distill_losses.pop('loss_dist_aux')
    distiller.loss_forward_mappings.pop('loss_dist_aux')
    with pytest.raises(ValueError, match='has no auxiliary_head'):
        build(cfg)


DIST_RECIPES = sorted(
    p for p in glob.glob(osp.join(CONFIG_DIR, '*.py'))
    if osp.basename(p).startswith(('dist_', 'dist-gskd_')))


@pytest.mark.parametrize('path', DIST_RECIPES, ids=osp.basename)
def test_dist_recipes_distil_auxiliary_logits_where_both_have_a_head(path):
    """ResNet students of CNN teachers get 0.4 x DIST on the auxiliary
    logits; MobileNetV2 and MiT-B0 students (no auxiliary head) and the
    SegFormer teacher (none either) do not."""
    from gskd_mm.models.algorithms import teacher_model_config
    cfg = Config.fromfile(path)
    student = cfg.model.architecture
    teacher = teacher_model_config(cfg.model.teacher)
    both = bool(student.get('auxiliary_head')) and bool(
        teacher.get('auxiliary_head'))
    assert both is (student.backbone.type == 'ResNetV1c'
                    and teacher.backbone.type == 'ResNetV1c')
    distiller = cfg.model.distiller
    assert cfg.model.get('teacher_auxiliary', False) is both
    assert ('loss_dist_aux' in distiller.distill_losses) is both
    if both:
        aux = distiller.distill_losses.loss_dist_aux
        assert aux.loss_weight == pytest.approx(
            0.4 * distiller.distill_losses.loss_dist.loss_weight)
        assert aux.type == distiller.distill_losses.loss_dist.type
        assert aux.tau == distiller.distill_losses.loss_dist.tau
        for side in ('student_recorders', 'teacher_recorders'):
            assert distiller[side].aux_logits.source == \
                'auxiliary_head.conv_seg'


@pytest.mark.slow
def test_pspnet_dist_recipe_trains_with_auxiliary_logits():
    path = osp.join(CONFIG_DIR, 'dist_pspnet_r101-d8_pspnet_r18-d8_'
                    '4xb4-40k_cityscapes-512x1024.py')
    cfg = shrink_recipe(Config.fromfile(path))
    model = build(cfg).train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    batch = generated_batch(2, (64, 64), num_classes_of(cfg))
    losses = model.train_step(batch, optim)
    assert {'distill.loss_dist', 'distill.loss_dist_aux'} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())


# ------------------------------------------------- mismatched classes
def test_teacher_with_other_classes_says_so():
    """A teacher predicting other classes than the student fails with the
    numbers and the fix, not with advice to add a connector."""
    cfg = recipe_cfg()
    classes = num_classes_of(cfg)
    for head in ('decode_head', 'auxiliary_head'):
        cfg.model.teacher[head].num_classes = classes + 2
    model = build(cfg).train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    batch = generated_batch(2, (64, 64), classes)
    with pytest.raises(ValueError) as error:
        model.train_step(batch, optim)
    message = str(error.value)
    assert (f'different numbers of classes ({classes} and {classes + 2})'
            in message)
    assert "'model.decode_head.num_classes'" in message
    assert 'connector' not in message


def test_channel_mismatch_messages():
    from gskd_mm.models.utils import check_dense_pair
    a, b = torch.zeros(2, 19, 4, 4), torch.zeros(2, 21, 4, 4)
    with pytest.raises(ValueError, match=r'classes \(19 and 21\)') as error:
        check_dense_pair('logits_S', 'logits_T', a, b)
    assert 'connector' not in str(error.value)
    # Names that do not say which: both fixes.
    with pytest.raises(ValueError, match='if these are logits.*connector'):
        check_dense_pair('preds_S', 'preds_T', a, b)
    # Features: the connector's out_channels, and no word of classes.
    with pytest.raises(ValueError, match='out_channels must be the '
                       "teacher's feature width, 21") as error:
        check_dense_pair('preds_S', 'preds_T', a, b, kind='features')
    assert 'classes' not in str(error.value)


@pytest.mark.parametrize('width', ['in_channels', 'out_channels'])
def test_a_projector_of_the_wrong_width_is_named_with_the_fix(width):
    """A GSKD projector that does not fit the student (in) or the teacher
    (out) fails before the loss, naming itself, both widths and the key to
    set; not with torch's conv error or a word about classes."""
    cfg = recipe_cfg()
    projector = cfg.model.distiller.connectors.gskd_projector
    right = projector[width]
    projector[width] = right // 2
    model = build(cfg).train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    batch = generated_batch(2, (64, 64), num_classes_of(cfg))
    with pytest.raises(ValueError) as error:
        model.train_step(batch, optim)
    message = str(error.value)
    assert "connector 'gskd_projector' (GSKDProjector)" in message
    assert f'{right // 2} channels' in message and f'{right}' in message
    assert (f'set model.distiller.connectors.gskd_projector.{width}='
            f'{right}') in message
    assert 'classes' not in message
