# Copyright (c) gskd-mm contributors. All rights reserved.
"""Tiny synthetic copies of the segmentation datasets the recipes train on.

Each ``make_*`` function writes a few images and label maps with the real
directory layout, file naming and label encoding of the dataset, so that
MMSeg's own dataset classes and pipelines read them unchanged; it returns
the ``data_root`` that MMSeg's dataset config expects. Content is
synthetic: a label map of a few blobs, and an image whose colours depend on
the labels plus noise, so that a network can learn something from it.
"""
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

CITYSCAPES_NUM_CLASSES = 19
ADE20K_NUM_CLASSES = 150
VOC_NUM_CLASSES = 21
COCO_STUFF_NUM_CLASSES = 171
IGNORE_INDEX = 255

__all__ = [
    'make_cityscapes', 'make_ade20k', 'make_coco_stuff164k', 'make_voc12aug',
    'synthetic_sample', 'voc_palette'
]


def synthetic_sample(rng: np.random.Generator,
                     size: Tuple[int, int],
                     labels: Sequence[int],
                     num_blobs: int = 4) -> Tuple[np.ndarray, np.ndarray]:
    """An (h, w, 3) uint8 image and its (h, w) uint8 label map.

    The label map is a background label with ``num_blobs`` rectangles and
    ellipses of other labels, all drawn from ``labels``; every label value
    has its own colour (the same in every image drawn with the same label
    set), to which a gradient and noise are added.

    Args:
        rng (np.random.Generator): Source of randomness.
        size (tuple[int, int]): (h, w).
        labels (Sequence[int]): Label values to draw from.
        num_blobs (int): Number of foreground shapes. Defaults to 4.

    Returns:
        tuple[np.ndarray, np.ndarray]: Image (RGB) and label map.
    """
    h, w = size
    labels = np.asarray(labels)
    label = np.full((h, w), rng.choice(labels), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(num_blobs):
        value = rng.choice(labels)
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        ry = rng.integers(max(h // 8, 2), max(h // 2, 3))
        rx = rng.integers(max(w // 8, 2), max(w // 2, 3))
        if rng.random() < 0.5:
            mask = ((yy - cy) / ry)**2 + ((xx - cx) / rx)**2 <= 1
        else:
            mask = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
        label[mask] = value
    # A colour per label value, fixed across images (not across seeds).
    colours = np.random.default_rng(12345).integers(
        0, 256, (256, 3)).astype(np.float32)
    image = colours[label]
    image += 40.0 * (yy / max(h - 1, 1))[..., None]  # vertical gradient
    image += rng.normal(0, 20, size=image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return image, label


def _save(array: np.ndarray, path: str, **kwargs) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def make_cityscapes(root: str,
                    num_train: int = 4,
                    num_val: int = 2,
                    size: Tuple[int, int] = (64, 128),
                    seed: int = 0) -> str:
    """Write a Cityscapes tree as MMSeg's ``CityscapesDataset`` reads it.

    ``leftImg8bit/{train,val}/<city>/<city>_000000_0000NN_leftImg8bit.png``
    and ``gtFine/{train,val}/<city>/<city>_000000_0000NN_gtFine_
    labelTrainIds.png`` (train ids 0..18, 255 ignored; the bottom rows are
    ignored like the ego vehicle). Training images are spread over two
    cities.

    Args:
        root (str): Directory to create (``data/cityscapes`` in MMSeg).
        num_train (int): Training images. Defaults to 4.
        num_val (int): Validation images. Defaults to 2.
        size (tuple[int, int]): (h, w); Cityscapes is 1:2. Defaults to
            (64, 128).
        seed (int): Random seed. Defaults to 0.

    Returns:
        str: The data root (``root``).
    """
    rng = np.random.default_rng(seed)
    splits = dict(
        train=[('aachen', 'bochum')[i % 2] for i in range(num_train)],
        val=['frankfurt'] * num_val)
    for split, cities in splits.items():
        for i, city in enumerate(cities):
            stem = f'{city}_000000_{i + 19:06d}'
            image, label = synthetic_sample(
                rng, size, range(CITYSCAPES_NUM_CLASSES))
            label[-max(size[0] // 8, 1):] = IGNORE_INDEX
            _save(image,
                  osp.join(root, 'leftImg8bit', split, city,
                           f'{stem}_leftImg8bit.png'))
            _save(label,
                  osp.join(root, 'gtFine', split, city,
                           f'{stem}_gtFine_labelTrainIds.png'))
    return root


def make_ade20k(root: str,
                num_train: int = 4,
                num_val: int = 2,
                sizes: Sequence[Tuple[int, int]] = ((64, 96), (72, 64)),
                seed: int = 0) -> str:
    """Write an ADEChallengeData2016 tree as ``ADE20KDataset`` reads it.

    ``images/{training,validation}/ADE_{train,val}_000000NN.jpg`` and
    ``annotations/{training,validation}/ADE_..._000000NN.png`` with values
    0..150, where 0 is "other" (ignored: the dataset reduces the zero
    label).

    Args:
        root (str): Directory to create (``data/ade/ADEChallengeData2016``
            in MMSeg).
        num_train (int): Training images. Defaults to 4.
        num_val (int): Validation images. Defaults to 2.
        sizes (Sequence[tuple[int, int]]): (h, w) sizes used in turn.
        seed (int): Random seed. Defaults to 0.

    Returns:
        str: The data root (``root``).
    """
    rng = np.random.default_rng(seed)
    # A few frequent classes (as in ADE20K) and the "other" label 0.
    labels = [0, 1, 2, 3, 4, 5, 7, 13, 150]
    for split, prefix, count in (('training', 'train', num_train),
                                 ('validation', 'val', num_val)):
        for i in range(count):
            stem = f'ADE_{prefix}_{i + 1:08d}'
            image, label = synthetic_sample(rng, sizes[i % len(sizes)],
                                            labels)
            _save(image, osp.join(root, 'images', split, f'{stem}.jpg'),
                  quality=95)
            _save(label, osp.join(root, 'annotations', split, f'{stem}.png'))
    return root


def make_coco_stuff164k(root: str,
                        num_train: int = 4,
                        num_val: int = 2,
                        sizes: Sequence[Tuple[int, int]] = ((64, 96),
                                                            (80, 64)),
                        seed: int = 0) -> str:
    """Write a COCO-Stuff-164k tree as ``COCOStuffDataset`` reads it.

    ``images/{train,val}2017/<12 digits>.jpg`` and
    ``annotations/{train,val}2017/<12 digits>_labelTrainIds.png`` with the
    train ids 0..170 and 255 ignored, as MMSeg's ``coco_stuff164k.py``
    converter writes them.

    Args:
        root (str): Directory to create (``data/coco_stuff164k`` in MMSeg).
        num_train (int): Training images. Defaults to 4.
        num_val (int): Validation images. Defaults to 2.
        sizes (Sequence[tuple[int, int]]): (h, w) sizes used in turn.
        seed (int): Random seed. Defaults to 0.

    Returns:
        str: The data root (``root``).
    """
    rng = np.random.default_rng(seed)
    # A few things and stuff classes, and unlabelled pixels.
    labels = [0, 2, 56, 92, 105, 170, IGNORE_INDEX]
    for split, count in (('train2017', num_train), ('val2017', num_val)):
        for i in range(count):
            stem = f'{i + 1:012d}'
            image, label = synthetic_sample(rng, sizes[i % len(sizes)],
                                            labels)
            _save(image, osp.join(root, 'images', split, f'{stem}.jpg'),
                  quality=95)
            _save(label,
                  osp.join(root, 'annotations', split,
                           f'{stem}_labelTrainIds.png'))
    return root


def voc_palette() -> List[int]:
    """The 256-colour palette of Pascal VOC's ``SegmentationClass`` PNGs."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def make_voc12aug(root: str,
                  num_train: int = 2,
                  num_aug: int = 2,
                  num_val: int = 2,
                  sizes: Sequence[Tuple[int, int]] = ((60, 80), (72, 64)),
                  seed: int = 0) -> str:
    """Write ``VOCdevkit/VOC2012`` as MMSeg's VOC (+ SBD aug) configs read it.

    ``JPEGImages/<year>_<id>.jpg`` for every image; ``SegmentationClass``
    (palette PNGs, classes 0..20, object outlines 255) for the train and
    val lists; ``SegmentationClassAug`` (plain index PNGs, no outlines, as
    MMSeg's ``voc_aug.py`` converter writes them) for every image;
    ``ImageSets/Segmentation/{train,val,aug}.txt``. ``aug.txt`` holds
    images that are in neither ``train.txt`` nor ``val.txt``; MMSeg trains
    on ``train`` + ``aug`` (a ``ConcatDataset``).

    Args:
        root (str): Directory under which ``VOCdevkit/VOC2012`` is created
            (``data`` in MMSeg).
        num_train (int): Images in ``train.txt``. Defaults to 2.
        num_aug (int): Images in ``aug.txt``. Defaults to 2.
        num_val (int): Images in ``val.txt``. Defaults to 2.
        sizes (Sequence[tuple[int, int]]): (h, w) sizes used in turn.
        seed (int): Random seed. Defaults to 0.

    Returns:
        str: The data root, ``<root>/VOCdevkit/VOC2012``.
    """
    rng = np.random.default_rng(seed)
    voc = osp.join(root, 'VOCdevkit', 'VOC2012')
    palette = voc_palette()
    lists: Dict[str, List[str]] = dict(train=[], val=[], aug=[])
    serial = 0
    for split, count in (('train', num_train), ('val', num_val),
                         ('aug', num_aug)):
        for _ in range(count):
            serial += 1
            name = f'2007_{serial:06d}'
            lists[split].append(name)
            image, label = synthetic_sample(rng, sizes[serial % len(sizes)],
                                            range(VOC_NUM_CLASSES))
            _save(image, osp.join(voc, 'JPEGImages', f'{name}.jpg'),
                  quality=95)
            _save(label,
                  osp.join(voc, 'SegmentationClassAug', f'{name}.png'))
            if split != 'aug':
                outlined = label.copy()
                edges = np.zeros(label.shape, dtype=bool)
                edges[1:] |= label[1:] != label[:-1]
                edges[:, 1:] |= label[:, 1:] != label[:, :-1]
                outlined[edges] = IGNORE_INDEX
                indexed = Image.fromarray(outlined)
                indexed.putpalette(palette)  # 'L' -> 'P', indices kept
                assert indexed.mode == 'P'
                path = osp.join(voc, 'SegmentationClass', f'{name}.png')
                os.makedirs(osp.dirname(path), exist_ok=True)
                indexed.save(path)
    sets = osp.join(voc, 'ImageSets', 'Segmentation')
    os.makedirs(sets, exist_ok=True)
    for split, names in lists.items():
        with open(osp.join(sets, f'{split}.txt'), 'w') as f:
            f.write(''.join(f'{n}\n' for n in names))
    return voc
