# Copyright (c) gskd-mm contributors. All rights reserved.
"""Run a recipe offline: no checkpoint or ImageNet download, another crop.

The step benchmark (``tools/analysis_tools/benchmark_step.py``) and the
tests run the shipped recipes on generated data with it.
"""
from typing import Any, Iterator, Optional, Tuple

from mmengine.config import Config, ConfigDict

from ..models.algorithms import teacher_model_config


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


def discriminator_stages(crop: Tuple[int, int], stages: int = 4) -> int:
    """How many of an adversarial discriminator's stages fit a crop.

    Its stride-2 stages halve the student's stride-8 logits, and each stage
    needs 4 * 2**stages pixels of them (``SAGANDiscriminator``).

    Args:
        crop (tuple[int, int]): (h, w) crop.
        stages (int): The discriminator's stages. Defaults to 4.

    Returns:
        int: ``stages``, or fewer (at least 1) where the crop is too small.
    """
    return max(1, min(stages, (min(crop) // 8 // 4).bit_length() - 1))


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


def offline_recipe(cfg: Config,
                   crop: Optional[Tuple[int, int]],
                   data_root: Optional[str] = None,
                   sync_bn_to_bn: bool = False) -> Config:
    """Make a recipe run offline, as written except for downloads and crop.

    No teacher checkpoint and no ImageNet initialisation (weights stay at
    their initialisation, which costs the same time); a ``cfg_path``
    teacher is spelled out as ``mmengine.hub.get_model`` builds it (see
    :func:`teacher_without_downloads`); data loading runs in the main
    process. With a crop, the pipeline and every
    ``data_preprocessor.size`` (which pads every input to it) shrink to it,
    and a discriminator of adversarial distillation gets as many stride-2
    stages as the crop's stride-8 logits take (its recipes' four need
    512 x 512 crops).

    Args:
        cfg (Config): A loaded recipe; modified in place.
        crop (tuple[int, int], optional): (h, w) crop; None keeps the
            recipe's crop and image scales.
        data_root (str, optional): New root of every dataset.
        sync_bn_to_bn (bool): Replace SyncBN by BN in the config (student
            and teacher), for multi-process CPU (gloo) runs, where SyncBN
            raises (torch's DDP refuses SyncBN in a CPU model).
            Defaults to False.

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
    if crop is not None and 'discriminator' in cfg.model:
        cfg.model.discriminator.num_stages = discriminator_stages(
            crop, cfg.model.discriminator.get('num_stages', 4))
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
