# Copyright (c) gskd-mm contributors. All rights reserved.
"""Run the real recipes small: CPU-sized crops, no downloads, random data."""
from typing import Any, Dict, Iterator, Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample


def iter_dicts(node: Any) -> Iterator[dict]:
    """Yield every dict nested in a config (lists and dicts walked)."""
    if isinstance(node, dict):
        yield node
        children = node.values()
    elif isinstance(node, (list, tuple)):
        children = node
    else:
        return
    for child in children:
        yield from iter_dicts(child)


def shrink_recipe(cfg: Config,
                  crop: Tuple[int, int] = (64, 64),
                  sync_bn_to_bn: bool = False,
                  data_root: Optional[str] = None) -> Config:
    """Make a distillation recipe runnable on a CPU in tests.

    The crop (pipeline and ``data_preprocessor.size``, which pads every
    input to the crop) shrinks to ``crop``; nothing is downloaded (teacher
    checkpoint and ImageNet initialisation off); data loading runs in the
    main process. Everything else of the recipe stays as written.

    Args:
        cfg (Config): A loaded recipe; modified in place.
        crop (tuple[int, int]): (h, w) crop. Defaults to (64, 64).
        sync_bn_to_bn (bool): Replace SyncBN by BN in the config, for
            multi-process CPU (gloo) runs, where SyncBN raises.
            Defaults to False.
        data_root (str, optional): New root of every dataset.

    Returns:
        Config: ``cfg``.
    """
    h, w = crop
    cfg.model.teacher_ckpt = None
    student = cfg.model.architecture
    student.data_preprocessor.size = crop
    student.pretrained = None
    student.backbone.init_cfg = None
    for node in iter_dicts(cfg._cfg_dict):
        kind = node.get('type')
        if kind == 'RandomCrop':
            node['crop_size'] = crop
        elif kind == 'Pad':
            node['size'] = crop
        elif kind in ('RandomResize', 'Resize') and 'scale' in node:
            # Same aspect as the dataset's own scale, short side = crop h.
            long_side, short_side = node['scale']
            node['scale'] = (round(long_side * h / short_side), h)
        elif kind == 'SyncBN' and sync_bn_to_bn:
            node['type'] = 'BN'
        if data_root is not None and 'data_root' in node:
            node['data_root'] = data_root
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if loader in cfg:
            cfg[loader].num_workers = 0
            cfg[loader].persistent_workers = False
    return cfg


def random_seg_batch(num_images: int,
                     size: Tuple[int, int],
                     num_classes: int,
                     ignore_fraction: float = 0.1) -> Dict[str, list]:
    """A data batch as MMSeg's dataloader yields it, with random content.

    Args:
        num_images (int): Batch size.
        size (tuple[int, int]): Image (h, w).
        num_classes (int): Labels are drawn from ``[0, num_classes)``.
        ignore_fraction (float): Share of pixels labelled 255.

    Returns:
        dict: ``inputs`` (uint8 CHW images) and ``data_samples``.
    """
    h, w = size
    batch: Dict[str, list] = dict(inputs=[], data_samples=[])
    for _ in range(num_images):
        label = torch.randint(0, num_classes, (1, h, w))
        label[torch.rand(1, h, w) < ignore_fraction] = 255
        sample = SegDataSample(
            gt_sem_seg=PixelData(data=label),
            metainfo=dict(img_shape=size, pad_shape=size, ori_shape=size))
        batch['inputs'].append(
            torch.randint(0, 256, (3, h, w), dtype=torch.uint8))
        batch['data_samples'].append(sample)
    return batch


def num_classes_of(cfg: Config) -> int:
    """Number of classes of the recipe's student."""
    head: ConfigDict = cfg.model.architecture.decode_head
    return head.num_classes
