# Copyright (c) gskd-mm contributors. All rights reserved.
"""Synthetic Scenes: generation, statistics and the registered dataset."""
import json
import os
import os.path as osp
import threading
import time

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from PIL import Image
from scipy import ndimage

import projects.gskd_demo.gskd_demo.dataset as synthetic_dataset
from projects.gskd_demo.gskd_demo.dataset import (SyntheticScenesDataset,
                                                  class_pixel_counts,
                                                  default_cache_dir,
                                                  generate_synthetic_scenes)
from projects.gskd_demo.gskd_demo.scenes import (CLASSES, IGNORE_INDEX,
                                                 PALETTE, RENDER_COLOURS)

NUM_CLASSES = len(CLASSES)
BACKGROUND, WATER, TILES, TENT, BOAT, FLOWERS, GRAVEL = range(NUM_CLASSES)
SMALL = dict(num_train=5, num_val=3)


def _files(root):
    """{relative path: bytes} of every file under ``root``."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, root)] = f.read()
    return out


def _read(path):
    with Image.open(path) as img:
        return img.mode, np.asarray(img)


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    """A generated dataset and its training images and labels."""
    root = str(tmp_path_factory.mktemp('scenes'))
    generate_synthetic_scenes(root, num_train=200, num_val=20)
    with open(osp.join(root, 'splits', 'train.txt')) as f:
        names = f.read().split()
    images = np.stack([
        _read(osp.join(root, 'img_dir', 'train', n + '.png'))[1] for n in names
    ])
    labels = np.stack([
        _read(osp.join(root, 'ann_dir', 'train', n + '.png'))[1] for n in names
    ])
    return root, images, labels


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv('GSKD_MM_CACHE', str(tmp_path))
    assert default_cache_dir() == str(tmp_path)
    monkeypatch.delenv('GSKD_MM_CACHE')
    assert default_cache_dir() == osp.expanduser('~/.cache/gskd_mm')


def test_generation_is_deterministic(tmp_path):
    a = generate_synthetic_scenes(str(tmp_path / 'a'), **SMALL)
    b = generate_synthetic_scenes(str(tmp_path / 'b'), **SMALL)
    assert a == str(tmp_path / 'a')
    files_a, files_b = _files(a), _files(b)
    assert len(files_a) == 2 * 8 + 2 + 1  # images, labels, splits, meta
    assert files_a == files_b

    # Image i does not depend on how many images are drawn...
    fewer = _files(generate_synthetic_scenes(str(tmp_path / 'c'), 2, 1))
    assert fewer['img_dir/train/train_00001.png'] == \
        files_a['img_dir/train/train_00001.png']
    assert fewer['ann_dir/val/val_00000.png'] == \
        files_a['ann_dir/val/val_00000.png']
    # ... but on the seed, and train and val images differ.
    other = _files(
        generate_synthetic_scenes(str(tmp_path / 'd'), seed=1, **SMALL))
    assert other['img_dir/train/train_00000.png'] != \
        files_a['img_dir/train/train_00000.png']
    assert files_a['img_dir/train/train_00000.png'] != \
        files_a['img_dir/val/val_00000.png']


def test_generation_is_idempotent(tmp_path):
    root = generate_synthetic_scenes(str(tmp_path), **SMALL)
    paths = [osp.join(root, p) for p in _files(root)]
    for path in paths:  # an old time, so that any rewrite shows
        os.utime(path, ns=(10**18, 10**18))
    assert generate_synthetic_scenes(str(tmp_path), **SMALL) == root
    assert all(os.stat(p).st_mtime_ns == 10**18 for p in paths)


def test_regenerates_on_changed_parameters(tmp_path):
    root = str(tmp_path)
    generate_synthetic_scenes(root, **SMALL)
    first = _files(root)['img_dir/train/train_00000.png']

    generate_synthetic_scenes(root, num_train=2, num_val=3)
    with open(osp.join(root, 'splits', 'train.txt')) as f:
        assert f.read().split() == ['train_00000', 'train_00001']
    # Stale images do not survive.
    assert sorted(os.listdir(osp.join(root, 'img_dir', 'train'))) == \
        ['train_00000.png', 'train_00001.png']
    with open(osp.join(root, 'meta.json')) as f:
        assert json.load(f)['params']['num_train'] == 2

    generate_synthetic_scenes(root, num_train=2, num_val=3, seed=7)
    assert _files(root)['img_dir/train/train_00000.png'] != first

    generate_synthetic_scenes(
        root, num_train=2, num_val=3, img_size=32, seed=7)
    _, image = _read(osp.join(root, 'img_dir', 'val', 'val_00002.png'))
    assert image.shape == (32, 32, 3)


def test_interrupted_generation_is_redone(tmp_path, monkeypatch):
    render = synthetic_dataset.render_scene
    calls = []

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return render(*args, **kwargs)

    monkeypatch.setattr(synthetic_dataset, 'render_scene', failing_render)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_scenes(str(tmp_path / 'a'), **SMALL)
    assert not osp.exists(tmp_path / 'a' / 'meta.json')
    monkeypatch.setattr(synthetic_dataset, 'render_scene', render)

    generate_synthetic_scenes(str(tmp_path / 'a'), **SMALL)
    generate_synthetic_scenes(str(tmp_path / 'b'), **SMALL)
    assert _files(tmp_path / 'a') == _files(tmp_path / 'b')


def test_invalid_parameters(tmp_path):
    with pytest.raises(ValueError):
        generate_synthetic_scenes(str(tmp_path), num_train=-1)
    with pytest.raises(ValueError):
        generate_synthetic_scenes(str(tmp_path), img_size=8)


def test_layout_and_split_files(scenes):
    root, images, labels = scenes
    for split, count in (('train', 200), ('val', 20)):
        with open(osp.join(root, 'splits', f'{split}.txt')) as f:
            names = f.read().splitlines()
        assert names == [f'{split}_{i:05d}' for i in range(count)]
        for sub in ('img_dir', 'ann_dir'):
            assert sorted(os.listdir(osp.join(root, sub, split))) == \
                [n + '.png' for n in names]
        mode, image = _read(
            osp.join(root, 'img_dir', split, names[0] + '.png'))
        assert mode == 'RGB' and image.shape == (64, 64, 3)
        mode, label = _read(
            osp.join(root, 'ann_dir', split, names[0] + '.png'))
        assert mode == 'L' and label.shape == (64, 64)
    with open(osp.join(root, 'meta.json')) as f:
        meta = json.load(f)
    assert meta['params'] == dict(
        num_train=200, num_val=20, img_size=64, seed=0)
    assert meta['classes'] == list(CLASSES)
    assert images.dtype == np.uint8 and images.shape == (200, 64, 64, 3)


def test_label_values_and_ignore_regions(scenes):
    _, _, labels = scenes
    values = set(np.unique(labels).tolist())
    assert values == set(range(NUM_CLASSES)) | {IGNORE_INDEX}
    # Some images, not most, have an unlabelled band or patch.
    has_ignore = (labels == IGNORE_INDEX).any(axis=(1, 2))
    assert 0.1 < has_ignore.mean() < 0.5
    ignored = (labels == IGNORE_INDEX).sum(axis=(1, 2))
    assert ignored[has_ignore].min() >= 3 * 8


def test_every_class_appears_with_imbalanced_frequencies(scenes):
    root, _, labels = scenes
    counts = class_pixel_counts(root, 'train')
    assert counts.sum() == labels.size
    assert counts[-1] == (labels == IGNORE_INDEX).sum()
    pixels = counts[:-1]
    assert (pixels > 0).all()
    # Every class is in many images, not in a lucky few.
    for cls in range(NUM_CLASSES):
        assert (labels == cls).any(axis=(1, 2)).sum() >= 20, CLASSES[cls]
    # Imbalanced, with background most common, yet not everything.
    assert pixels.argmax() == BACKGROUND
    assert pixels.min() * 20 < pixels.max()
    assert pixels[BACKGROUND] < 0.7 * pixels.sum()
    assert pixels[GRAVEL] < pixels[FLOWERS] < pixels[TILES] < pixels[WATER]


def test_colour_does_not_identify_the_class(scenes):
    _, images, labels = scenes
    valid = labels < NUM_CLASSES
    # Every class is painted with (nearly) every shared colour.
    dist = ((images[..., None, :].astype(np.float32) -
             RENDER_COLOURS)**2).sum(-1)
    nearest = dist.argmin(-1)
    for cls in range(NUM_CLASSES):
        share = np.bincount(
            nearest[labels == cls], minlength=len(RENDER_COLOURS))
        share = share / share.sum()
        assert (share >= 0.02).sum() >= len(RENDER_COLOURS) - 1, CLASSES[cls]

    # The best per-pixel classifier from colour alone (the majority class
    # of each colour bin, fitted on the very pixels it is scored on) is
    # barely better than always answering "background".
    bins = (images // 32).astype(np.int64)
    bins = bins[..., 0] * 64 + bins[..., 1] * 8 + bins[..., 2]
    table = np.zeros((512, NUM_CLASSES))
    np.add.at(table, (bins[valid], labels[valid]), 1)
    pred = table.argmax(1)[bins[valid]]
    truth = labels[valid]
    accuracy = (pred == truth).mean()
    majority = (truth == BACKGROUND).mean()
    assert accuracy < majority + 0.08
    recall = [(pred[truth == c] == c).mean() for c in range(NUM_CLASSES)]
    assert np.mean(recall[1:]) < 0.2
    assert recall[TENT] < 0.1 and recall[BOAT] < 0.1


def _components(labels, cls, min_pixels=30):
    """(image index, mask) of each connected region of ``cls``."""
    for i, label in enumerate(labels):
        regions, num = ndimage.label(label == cls, np.ones((3, 3)))
        for k in range(1, num + 1):
            mask = regions == k
            if mask.sum() >= min_pixels:
                yield i, mask


def _edge_density(gray, mask):
    """Share of neighbour pairs in ``mask`` that cross a texture edge.

    None for a region without contrast (whose "edges" are only noise).
    """
    lo, hi = np.percentile(gray[mask], [5, 95])
    if hi - lo < 20:
        return None
    pairs_h = mask[:, 1:] & mask[:, :-1]
    pairs_v = mask[1:] & mask[:-1]
    diffs = np.concatenate([
        np.abs(np.diff(gray, axis=1))[pairs_h],
        np.abs(np.diff(gray, axis=0))[pairs_v]
    ])
    return (diffs > 0.3 * (hi - lo)).mean()


def test_context_pair_shares_texture_but_not_surroundings(scenes):
    _, images, labels = scenes
    gray = images.astype(np.float64).mean(-1)
    density, area, water_around = {}, {}, {}
    for cls in range(NUM_CLASSES):
        density[cls], area[cls] = [], []
        ring_water, ring_all = 0, 0
        for i, mask in _components(labels, cls):
            density[cls].append(_edge_density(gray[i], mask))
            area[cls].append(mask.sum())
            if density[cls][-1] is None:
                density[cls].pop()
            ring = ndimage.binary_dilation(mask, iterations=2) & ~mask
            ring &= labels[i] != IGNORE_INDEX
            ring_water += (labels[i][ring] == WATER).sum()
            ring_all += ring.sum()
        density[cls] = np.mean(density[cls])
        area[cls] = np.mean(area[cls])
        water_around[cls] = ring_water / ring_all

    # Tents and boats: the same texture statistics and sizes...
    assert abs(density[TENT] - density[BOAT]) < 0.02
    assert abs(area[TENT] - area[BOAT]) < 0.2 * area[BOAT]
    # ... where the statistic does tell other textures apart.
    assert density[GRAVEL] > density[TENT] + 0.2
    assert density[TENT] > density[BACKGROUND] + 0.15
    # Boats lie in water, tents never touch it; being in water is not a
    # cue for the texture-only classes.
    assert water_around[BOAT] == 1.0
    assert water_around[TENT] == 0.0
    for cls in (TILES, FLOWERS, GRAVEL):
        assert 0.1 < water_around[cls] < 0.9, CLASSES[cls]


def _build(**kwargs):
    from mmseg.registry import DATASETS
    cfg = dict(
        type='SyntheticScenesDataset',
        data_prefix=dict(
            img_path='img_dir/train', seg_map_path='ann_dir/train'),
        ann_file='splits/train.txt',
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')
        ])
    cfg.update(kwargs)
    with DefaultScope.overwrite_default_scope('mmseg'):
        return DATASETS.build(cfg)


def test_dataset_builds_through_the_registry(tmp_path, monkeypatch):
    monkeypatch.setenv('GSKD_MM_CACHE', str(tmp_path / 'cache'))
    root = str(tmp_path / 'scenes')
    dataset = _build(data_root=root, generate_cfg=SMALL)
    assert isinstance(dataset, SyntheticScenesDataset)
    assert len(dataset) == SMALL['num_train']
    assert dataset.metainfo['classes'] == CLASSES
    assert [list(c) for c in dataset.metainfo['palette']] == PALETTE
    assert osp.isfile(osp.join(root, 'meta.json'))
    assert not osp.exists(tmp_path / 'cache')

    item = dataset[1]
    assert tuple(item['inputs'].shape) == (3, 64, 64)
    seg = item['data_samples'].gt_sem_seg.data
    assert tuple(seg.shape) == (1, 64, 64)
    _, label = _read(osp.join(root, 'ann_dir', 'train', 'train_00001.png'))
    np.testing.assert_array_equal(seg[0].numpy(), label)

    val = _build(
        data_root=root,
        generate_cfg=SMALL,
        ann_file='splits/val.txt',
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'))
    assert len(val) == SMALL['num_val']
    assert val[0]['data_samples'].img_path.endswith('val_00000.png')


def test_loaded_files_are_kept_and_samples_unchanged(tmp_path):
    """The file loading is done once per file; every sample, random flips
    included, equals the pipeline's own output on the same draws."""
    import torch
    from mmengine.dataset import Compose
    flip = dict(type='RandomFlip', prob=0.5,
                direction=['horizontal', 'vertical'])
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'), flip,
        dict(type='PackSegInputs')
    ]
    dataset = _build(
        data_root=str(tmp_path / 'scenes'),
        generate_cfg=SMALL,
        pipeline=pipeline)
    with DefaultScope.overwrite_default_scope('mmseg'):
        plain = Compose(pipeline)
    synthetic_dataset._LOADED.clear()
    for round_ in range(3):  # the first loads the files, the others keep
        for idx in range(len(dataset)):
            np.random.seed(100 * round_ + idx)
            kept = dataset[idx]
            np.random.seed(100 * round_ + idx)
            expected = plain(dataset.get_data_info(idx))
            assert torch.equal(kept['inputs'], expected['inputs'])
            assert torch.equal(kept['data_samples'].gt_sem_seg.data,
                               expected['data_samples'].gt_sem_seg.data)
            assert kept['data_samples'].flip_direction == \
                expected['data_samples'].flip_direction
    assert len(synthetic_dataset._LOADED) == len(dataset)


def test_dataset_generates_into_the_cache_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv('GSKD_MM_CACHE', str(tmp_path))
    dataset = SyntheticScenesDataset(generate_cfg=SMALL)
    root = osp.join(str(tmp_path), 'synthetic_scenes')
    assert dataset.data_root == root
    assert len(dataset) == SMALL['num_train']
    assert osp.isfile(osp.join(root, 'meta.json'))
    # The lock lives next to the data, not inside it.
    assert osp.isfile(osp.join(str(tmp_path), '.synthetic_scenes.lock'))


def test_dataset_without_generation_writes_nothing(tmp_path):
    with pytest.raises(Exception):
        _build(data_root=str(tmp_path), generate=False)
    assert os.listdir(tmp_path) == []


def test_concurrent_generation_happens_once(tmp_path, monkeypatch):
    render = synthetic_dataset.render_scene
    calls = []

    def slow_render(*args, **kwargs):
        calls.append(1)
        time.sleep(0.01)  # wide window for a second generator to join
        return render(*args, **kwargs)

    monkeypatch.setattr(synthetic_dataset, 'render_scene', slow_render)
    root = str(tmp_path / 'scenes')
    barrier = threading.Barrier(2)
    errors = []

    def build():
        try:
            barrier.wait()
            synthetic_dataset._ensure_generated(root, SMALL)
        except Exception as e:  # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(calls) == SMALL['num_train'] + SMALL['num_val']
    with open(osp.join(root, 'meta.json')) as f:
        assert json.load(f)['params']['num_train'] == SMALL['num_train']
