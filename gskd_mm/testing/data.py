# Copyright (c) gskd-mm contributors. All rights reserved.
"""Generated segmentation data: one generator of region-shaped scenes.

:func:`region_sample` draws an image and its label map: a few large
regions (a background and four ellipses or rectangles of other classes,
each a quarter of the image across or more), as in street and indoor
scenes, not random blocks. The label layout matters: the task loss's
gradient averages out over pixels of random labels, so the share of a
distillation term depends on it.

On it:

- :func:`generated_batch`: a batch as MMSeg's train dataloader yields it;
- ``make_*``: tiny copies of the datasets the recipes train on, with the
  real directory layout, file naming and label encoding, so that MMSeg's
  own dataset classes and pipelines read them unchanged (each returns the
  ``data_root`` MMSeg's dataset config expects).
"""
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from PIL import Image

CITYSCAPES_NUM_CLASSES = 19
ADE20K_NUM_CLASSES = 150
VOC_NUM_CLASSES = 21
COCO_STUFF_NUM_CLASSES = 171
IGNORE_INDEX = 255

__all__ = [
    'generated_batch', 'make_cityscapes', 'make_ade20k',
    'make_coco_stuff164k', 'make_voc12aug', 'region_sample', 'voc_palette'
]


def region_sample(size: Tuple[int, int],
                  labels: Sequence[int],
                  rng: np.random.Generator,
                  num_blobs: int = 4) -> Tuple[np.ndarray, np.ndarray]:
    """An (h, w, 3) uint8 image and its (h, w) uint8 label map.

    The label map is a background label with ``num_blobs`` rectangles and
    ellipses of other labels, all drawn from ``labels``; every label value
    has its own colour (the same in every image drawn with the same label
    set), to which a gradient and noise are added.

    Args:
        size (tuple[int, int]): (h, w).
        labels (Sequence[int]): Label values to draw from.
        rng (np.random.Generator): Source of randomness.
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


def generated_batch(num_images: int,
                    size: Tuple[int, int],
                    num_classes: int,
                    rng: Union[np.random.Generator, int, None] = None,
                    ignore_index: int = IGNORE_INDEX) -> Dict[str, list]:
    """A batch as MMSeg's train dataloader yields it, of region-shaped
    scenes (:func:`region_sample`).

    Labels are classes in ``[0, num_classes)`` with the bottom eighth of
    every image unlabelled (as Cityscapes' ego vehicle); the recipe's data
    preprocessor then normalises and pads as for real data.

    Args:
        num_images (int): Batch size.
        size (tuple[int, int]): Image (h, w).
        num_classes (int): Number of classes.
        rng (np.random.Generator | int, optional): Source of randomness, or
            its seed. Defaults to None: seeded from torch's global
            generator, so that ``torch.manual_seed`` repeats the batch.
        ignore_index (int): Label of unlabelled pixels. Defaults to 255.

    Returns:
        dict: ``inputs`` (uint8 (3, h, w) tensors, BGR as MMSeg loads
        images) and ``data_samples`` (``SegDataSample`` with
        ``gt_sem_seg``).
    """
    if rng is None:
        rng = int(torch.randint(2**31 - 1, ()))
    rng = np.random.default_rng(rng)
    h, w = size
    batch: Dict[str, list] = dict(inputs=[], data_samples=[])
    for _ in range(num_images):
        image, label = region_sample(size, range(num_classes), rng)
        label[-max(h // 8, 1):] = ignore_index
        batch['inputs'].append(
            torch.from_numpy(np.ascontiguousarray(
                image[..., ::-1])).permute(2, 0, 1).contiguous())
        batch['data_samples'].append(
            SegDataSample(
                gt_sem_seg=PixelData(
                    data=torch.from_numpy(label.astype(np.int64))[None]),
                metainfo=dict(img_shape=size, pad_shape=size,
                              ori_shape=size)))
    return batch


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
            image, label = region_sample(size, range(CITYSCAPES_NUM_CLASSES),
                                         rng)
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
            image, label = region_sample(sizes[i % len(sizes)], labels,
                                         rng)
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
            image, label = region_sample(sizes[i % len(sizes)], labels,
                                         rng)
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

    ``JPEGImages``; ``SegmentationClass`` (palette PNGs, outlines 255) for
    train and val; ``SegmentationClassAug`` (index PNGs, as MMSeg's
    ``voc_aug.py`` writes them) for all; ``ImageSets/Segmentation/{train,
    val,aug}.txt``, ``aug`` disjoint from the other two.

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
            image, label = region_sample(sizes[serial % len(sizes)],
                                         range(VOC_NUM_CLASSES), rng)
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
