# Copyright (c) gskd-mm contributors. All rights reserved.
"""Library functions behind the tools: GSKD per descriptor, student
weights of a distiller, dataset classes for the figures."""
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

from gskd_mm.apis import init_student
from gskd_mm.models.losses import GSKDLoss
from gskd_mm.utils import register_all_modules, student_state_dict

from helpers import demo_networks

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Small networks and a dataset with a palette: the CPU demo's, whose
# dataset type is imported from the repository root.
PROJECT = osp.join(ROOT, 'projects', 'gskd_demo')
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


# ------------------------------------------------ GSKD per descriptor
def test_descriptor_losses_average_to_the_loss():
    torch.manual_seed(0)
    loss = GSKDLoss(num_samples=4, group_size=3, tau=2.0, loss_weight=3.0)
    preds_S = torch.randn(3, 8, 6, 6)
    preds_T = torch.randn(3, 8, 6, 6)
    logits_T = torch.randn(3, 5, 6, 6)
    labels = torch.randint(0, 5, (3, 12, 12))
    torch.manual_seed(7)
    expected = loss(preds_S, preds_T, logits_T, labels)
    torch.manual_seed(7)
    steps = loss.descriptors(preds_S, preds_T, logits_T, labels)
    terms = loss.descriptor_losses(steps)
    assert terms.shape == steps.columns_valid.shape[:2]
    assert (terms >= 0).all()
    torch.testing.assert_close(loss.reduce(terms, steps), expected)
    # Padding groups carry no term.
    groups = steps.groups_per_img
    for img in range(3):
        assert (terms[img, int(groups[img]):] == 0).all()


# ------------------------------------------------------------ students
def test_student_state_dict_strips_only_leading_prefix():
    weight = torch.ones(1)
    assert student_state_dict({
        'architecture.head.architecture.w': weight,
        'teacher.architecture.w': weight,
        'distiller.connectors.p.architecture.w': weight,
    }) == {
        'head.architecture.w': weight
    }
    with pytest.raises(ValueError, match='architecture'):
        student_state_dict({'w': weight})


def test_init_student_of_a_distill_config(tmp_path):
    register_all_modules(init_default_scope=False)
    config = osp.join(
        PROJECT, 'configs',
        'dist_deeplabv3_r18-w16-d4_deeplabv3_r18-w8-d4_synthetic-64x64.py')
    student, _ = demo_networks()
    state = {f'architecture.{k}': v for k, v in student.state_dict().items()}
    state['teacher.x'] = torch.zeros(1)
    ckpt = str(tmp_path / 'distill.pth')
    torch.save(dict(state_dict=state), ckpt)
    loaded = init_student(config, ckpt)
    assert not loaded.training
    for key, value in student.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


# --------------------------------------------------------- visualisation
def test_dataset_classes_from_mmseg_metainfo():
    from projects.gskd_demo.gskd_demo import scenes
    from gskd_mm.visualization import dataset_classes
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(
        osp.join(PROJECT, 'configs',
                 'deeplabv3_r18-w8-d4_synthetic-64x64.py'))
    cfg.test_dataloader.dataset.data_root = '/nonexistent'  # nothing read
    names, palette = dataset_classes(cfg)
    assert names == list(scenes.CLASSES)
    assert palette == [list(c) for c in scenes.PALETTE]
    # Without a palette, MMSeg's fixed random one, one colour per class.
    cfg = Config(
        dict(
            default_scope='mmseg',
            test_dataloader=dict(
                dataset=dict(
                    type='BaseSegDataset',
                    data_root='/nonexistent',
                    metainfo=dict(classes=('a', 'b', 'c')),
                    data_prefix=dict(img_path='i', seg_map_path='s')))))
    names, palette = dataset_classes(cfg)
    assert names == ['a', 'b', 'c']
    assert len(palette) == 3 and palette == dataset_classes(cfg)[1]
    # A type neither registered nor importable: the error names the fix.
    cfg.test_dataloader.dataset.type = 'projects.nowhere.NoDataset'
    with pytest.raises(KeyError, match='PYTHONPATH'):
        dataset_classes(cfg)
