# Copyright (c) gskd-mm contributors. All rights reserved.
"""The augmented demo pipeline (``configs/_base_/synthetic_scenes_aug.py``):
MMSeg's Cityscapes-style resize, crop, flip and photometric distortion on
the demo's 64x64 scenes, in the student and DIST variants."""
import copy

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.runner import set_random_seed
from mmseg.registry import DATASETS

from gskd_mm.apis import init_student
from projects.gskd_demo.gskd_demo.data import generate_params
from projects.gskd_demo.gskd_demo.dataset import generate_synthetic_scenes
from projects.gskd_demo.gskd_demo.methods import load_config
from projects.gskd_demo.gskd_demo.scenes import CLASSES, IGNORE_INDEX
from projects.gskd_demo.gskd_demo.training import setup_process, train

PAIR = 'deeplabv3_r18-w16-d4_deeplabv3_r18-w8-d4_synthetic'
STUDENT = 'deeplabv3_r18-w8-d4_synthetic-64x64.py'
STUDENT_AUG = 'deeplabv3_r18-w8-d4_synthetic-aug-64x64.py'
DIST = f'dist_{PAIR}-64x64.py'
DIST_AUG = f'dist_{PAIR}-aug-64x64.py'
PARAMS = generate_params(16, 4)
SAMPLES = 48  # three passes over the 16 images


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('scenes'))
    generate_synthetic_scenes(root, **PARAMS)
    setup_process()
    return root


def config(name: str, data_root: str, iters: int = 2):
    return load_config(name, data_root, PARAMS, iters, 4, 0)


def samples(data_root: str) -> list:
    """Samples drawn through the augmented student's training dataset."""
    cfg = config(STUDENT_AUG, data_root)
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    set_random_seed(0)
    return [dataset[i % len(dataset)] for i in range(SAMPLES)]


def same_label_neighbours(label: np.ndarray) -> float:
    """Share of 4-neighbour pixel pairs (labelled both) with one label."""
    same, pairs = 0, 0
    for a, b in ((label[1:], label[:-1]), (label[:, 1:], label[:, :-1])):
        valid = (a != IGNORE_INDEX) & (b != IGNORE_INDEX)
        same += int((a == b)[valid].sum())
        pairs += int(valid.sum())
    return same / pairs


def test_augmented_samples_are_shaped_and_region_labelled(data_root):
    drawn = samples(data_root)
    sizes, scales, flips = set(), [], set()
    for sample in drawn:
        image = sample['inputs']
        meta = sample['data_samples']
        label = meta.gt_sem_seg.data
        h, w = image.shape[1:]
        # Square scenes, resized keeping the ratio, then cropped to 64x64
        # at most (the whole image below scale 1).
        assert image.shape[0] == 3 and h == w and 32 <= h <= 64
        assert tuple(label.shape) == (1, h, w)
        assert tuple(meta.img_shape) == (h, w)
        scale = meta.scale_factor[0]
        assert 0.5 <= scale <= 2.0 and meta.scale_factor[1] == scale
        assert h == min(64, round(64 * scale))
        sizes.add(h)
        scales.append(scale)
        flips.add(meta.flip_direction if meta.flip else None)
        values = set(np.unique(label.numpy()).tolist())
        assert values <= set(range(len(CLASSES))) | {IGNORE_INDEX}
        # Street-scene-like regions, not noise: neighbours mostly agree.
        assert same_label_neighbours(label[0].numpy()) > 0.8
    # Both sides of scale 1, every flip the demo draws.
    assert min(scales) < 0.8 and max(scales) > 1.5
    assert 64 in sizes and len(sizes) > 5
    assert flips == {None, 'horizontal', 'vertical'}


def test_augmented_batches_are_padded_to_the_crop(data_root):
    """The student's data preprocessor pads every crop to 64x64, its
    labels with the ignore index."""
    drawn = samples(data_root)[:8]
    model = init_student(config(STUDENT_AUG, data_root))
    batch = model.data_preprocessor(pseudo_collate(drawn), training=True)
    assert tuple(batch['inputs'].shape) == (8, 3, 64, 64)
    for sample, packed in zip(drawn, batch['data_samples']):
        h, w = sample['inputs'].shape[1:]
        label = packed.gt_sem_seg.data[0]
        assert tuple(label.shape) == (64, 64)
        assert torch.equal(label[:h, :w], sample['data_samples'].gt_sem_seg.
                           data[0])
        assert (label[h:] == IGNORE_INDEX).all()
        assert (label[:, w:] == IGNORE_INDEX).all()


def without_train_pipeline(cfg) -> dict:
    cfg = copy.deepcopy(cfg.to_dict())
    cfg.pop('train_pipeline')
    cfg.pop('aug_train_pipeline', None)
    cfg.pop('aug_crop_size', None)
    cfg['train_dataloader']['dataset'].pop('pipeline')
    return cfg


@pytest.mark.parametrize('plain,augmented', [(STUDENT, STUDENT_AUG),
                                             (DIST, DIST_AUG)])
def test_variants_differ_from_the_demo_by_the_pipeline_only(
        data_root, plain, augmented):
    plain_cfg = config(plain, data_root)
    aug_cfg = config(augmented, data_root)
    assert aug_cfg.train_dataloader.dataset.pipeline == \
        aug_cfg.aug_train_pipeline
    assert [t['type'] for t in aug_cfg.train_pipeline] == [
        'LoadImageFromFile', 'LoadAnnotations', 'RandomResize', 'RandomCrop',
        'RandomFlip', 'PhotoMetricDistortion', 'PackSegInputs'
    ]
    # The demo's own flip, kept.
    assert aug_cfg.train_pipeline[4] == plain_cfg.train_pipeline[2]
    assert without_train_pipeline(aug_cfg) == without_train_pipeline(
        plain_cfg)


def test_augmented_student_trains(data_root, tmp_path):
    result = train(
        config(STUDENT_AUG, data_root), str(tmp_path), 'aug_student',
        'WARNING')
    assert np.isfinite(result.grad_norms['decode.loss_ce'].value)
    assert 0 <= result.miou <= 100
