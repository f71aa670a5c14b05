# Copyright (c) gskd-mm contributors. All rights reserved.
"""Run the real recipes small: CPU-sized crops, no downloads, random data."""
import copy
import functools
import math
import os.path as osp
from typing import Any, Dict, Iterator, Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict
from mmengine.hub import get_config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmrazor.registry import MODELS
from mmseg.structures import SegDataSample

from gskd_mm.models.algorithms import teacher_model_config


@functools.lru_cache(maxsize=None)
def _parse(path: str) -> Config:
    return Config.fromfile(path)


@functools.lru_cache(maxsize=None)
def _zoo(cfg_path: str, pretrained: bool) -> Config:
    return get_config(cfg_path, pretrained=pretrained)


def load_config(path: str) -> Config:
    """``Config.fromfile``, parsed once per test run.

    Parsing a recipe (its ``mmseg::`` bases included) takes about a second;
    several tests read every recipe. Each call returns a copy of its own,
    which the caller may change.

    Args:
        path (str): Config file.

    Returns:
        Config: The loaded config.
    """
    return copy.deepcopy(_parse(osp.abspath(path)))


def zoo_config(cfg_path: str, pretrained: bool = False) -> Config:
    """``mmengine.hub.get_config``, parsed once per test run (a copy).

    Args:
        cfg_path (str): E.g. ``'mmseg::pspnet/pspnet_r18-d8_....py'``.
        pretrained (bool): Also read the config's weights (``model_path``).
            Defaults to False.

    Returns:
        Config: The loaded config.
    """
    return copy.deepcopy(_zoo(cfg_path, pretrained))


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
                  crop: Optional[Tuple[int, int]] = (64, 64),
                  sync_bn_to_bn: bool = False,
                  data_root: Optional[str] = None) -> Config:
    """Make a distillation recipe runnable on a CPU in tests.

    The crop (pipeline and every ``data_preprocessor.size``, which pads
    every input to the crop) shrinks to ``crop``; nothing is downloaded
    (teacher checkpoint and ImageNet initialisation of student and teacher
    off; a ``cfg_path`` teacher is spelled out as its model config, see
    :func:`teacher_without_downloads`); data loading runs in the main
    process. A discriminator of adversarial distillation gets as many
    stride-2 stages as the crop's stride-8 logits take (its recipes' four
    need 512 x 512 crops). Everything else of the recipe stays as written.

    Args:
        cfg (Config): A loaded recipe; modified in place.
        crop (tuple[int, int], optional): (h, w) crop; None keeps the
            recipe's crop and image scales. Defaults to (64, 64).
        sync_bn_to_bn (bool): Replace SyncBN by BN in the config (student
            and teacher), for multi-process CPU (gloo) runs, where SyncBN
            raises (torch's DDP refuses SyncBN in a CPU model).
            Defaults to False.
        data_root (str, optional): New root of every dataset.

    Returns:
        Config: ``cfg``.
    """
    cfg.model.teacher_ckpt = None
    # Spelled out first, so that the changes below reach the teacher too:
    # DDP refuses a CPU model with any SyncBN, the frozen teacher's included.
    cfg.model.teacher = teacher_without_downloads(cfg.model.teacher)
    student = cfg.model.architecture
    student.pretrained = None
    student.backbone.init_cfg = None
    if crop is not None:
        student.data_preprocessor.size = crop
        if 'discriminator' in cfg.model:
            # Logits of crop / 8; each stage halves them, down to >= 4.
            cfg.model.discriminator.num_stages = max(
                1, min(4, int(math.log2(min(crop) // 8 // 4))))
    for node in iter_dicts(cfg._cfg_dict):
        kind = node.get('type')
        if kind == 'SyncBN' and sync_bn_to_bn:
            node['type'] = 'BN'
        elif kind == 'GSKDProjector' and sync_bn_to_bn:
            node.setdefault('norm_cfg', dict(type='BN'))  # default: SyncBN
        if data_root is not None and 'data_root' in node:
            node['data_root'] = data_root
        if crop is not None:
            resize_to_crop(node, crop)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if loader in cfg:
            cfg[loader].num_workers = 0
            cfg[loader].persistent_workers = False
    return cfg


def resize_to_crop(node: dict, crop: Tuple[int, int]) -> None:
    """Shrink the sizes of one config node (a transform, a preprocessor).

    Args:
        node (dict): A dict of the config; changed in place.
        crop (tuple[int, int]): (h, w) crop.
    """
    h, _ = crop
    kind = node.get('type')
    if kind == 'RandomCrop':
        node['crop_size'] = crop
    elif kind == 'Pad':
        node['size'] = crop
    elif kind in ('RandomResize', 'Resize') and 'scale' in node:
        # Same aspect as the dataset's own scale, short side = crop h.
        long_side, short_side = node['scale']
        node['scale'] = (round(long_side * h / short_side), h)
    elif kind == 'SegDataPreProcessor' and node.get('size'):
        # The student's and the top-level one, which a Runner gives
        # the whole algorithm (``model.data_preprocessor`` default).
        node['size'] = crop


def teacher_without_downloads(teacher: ConfigDict) -> ConfigDict:
    """The teacher's model config, with ImageNet initialisation off.

    A ``cfg_path`` teacher is built by ``mmengine.hub.get_model``, whose
    config initialises the backbone from ImageNet weights
    (``pretrained='open-mmlab://resnet101_v1c'``). Only a loaded
    ``teacher_ckpt`` stops ``Runner.train()``'s ``init_weights()`` from
    downloading them, so without one the teacher is spelled out as
    ``get_model`` builds it (same model, same scope; see
    :func:`teacher_model_config`) minus that initialisation.

    Args:
        teacher (ConfigDict): ``model.teacher`` of a recipe.

    Returns:
        ConfigDict: The teacher to build.
    """
    if 'cfg_path' in teacher and not teacher.get('type'):
        model = teacher_model_config(teacher)
    else:
        model = teacher
    if 'pretrained' in model:
        model.pretrained = None
    if 'backbone' in model:
        model.backbone.init_cfg = None
    return model


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


def train_one_step(cfg: Config,
                   num_images: int = 2,
                   size: Tuple[int, int] = (64, 64)) -> Tuple[Any, dict]:
    """Build a shrunk recipe and train it one step on a random batch.

    GSKD samples every labelled pixel (``valid_mask='labeled'``): random
    labels rarely match an untrained teacher, and GSKD would then have no
    points and its projector no gradient.

    Args:
        cfg (Config): A recipe after :func:`shrink_recipe`; its GSKD losses
            are changed in place.
        num_images (int): Batch size. Defaults to 2.
        size (tuple[int, int]): Image (h, w). Defaults to (64, 64).

    Returns:
        tuple: The distillation model (in train mode) and the step's losses.
    """
    for loss in cfg.model.distiller.distill_losses.values():
        if loss.type == 'GSKDLoss':
            loss.valid_mask = 'labeled'
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(cfg.model)
    model.train()
    # The recipe's own optimizers (two with adversarial distillation).
    optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    batch = random_seg_batch(num_images, size, num_classes_of(cfg))
    return model, model.train_step(batch, optim)


def num_classes_of(cfg: Config) -> int:
    """Number of classes of the recipe's student."""
    head: ConfigDict = cfg.model.architecture.decode_head
    return head.num_classes
