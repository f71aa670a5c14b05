# Copyright (c) gskd-mm contributors. All rights reserved.
"""Run a recipe offline: no checkpoint or ImageNet download, another crop.

The tests, the step benchmark (``tools/analysis_tools/benchmark_step.py``)
and the loss-gradient tool (``tools/analysis_tools/loss_gradients.py``) run
the shipped recipes on generated data with it: one path that shrinks a
recipe to a crop, one that removes its downloads.
"""
import os.path as osp
from typing import Any, Iterator, Optional, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.model import BaseModel

from ..apis import init_distiller
from ..models.algorithms import teacher_model_config
from ..utils import load_state_dict


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


def recipe_crop(cfg: Config) -> Tuple[int, int]:
    """The (h, w) training crop of a recipe (its student's padding size).

    Args:
        cfg (Config): A distillation recipe.

    Returns:
        tuple[int, int]: (h, w).
    """
    size = cfg.model.architecture.data_preprocessor.get('size')
    if size:
        return tuple(size)
    for transform in cfg.get('train_pipeline', []):
        if transform.get('type') == 'RandomCrop':
            return tuple(transform['crop_size'])
    raise ValueError('the recipe has no crop (student data_preprocessor '
                     'size, or RandomCrop in train_pipeline): pass --crop')


def build_offline_distiller(cfg: Config,
                            checkpoint: Optional[str] = None,
                            teacher_ckpt: Optional[str] = None,
                            device: str = 'cpu') -> Tuple[BaseModel, str]:
    """A recipe's distiller in train mode, with what weights exist offline.

    With ``checkpoint`` (a distiller checkpoint) every weight comes from
    there. Otherwise the networks are initialised as the recipe says minus
    downloads (run it through :func:`offline_recipe` first), and the
    teacher's weights are loaded from ``teacher_ckpt`` if that file exists
    (it is never downloaded).

    Args:
        cfg (Config): A distillation recipe after :func:`offline_recipe`.
        checkpoint (str, optional): A checkpoint of the distiller.
        teacher_ckpt (str, optional): The recipe's ``teacher_ckpt`` (as
            shipped, before :func:`offline_recipe` cleared it).
        device (str): Device. Defaults to 'cpu'.

    Returns:
        tuple[BaseModel, str]: The model, and which networks were trained
        ('student and teacher from <ckpt>', 'teacher from <ckpt>, student
        untrained', or 'untrained').
    """
    model, _ = init_distiller(cfg, None, device)  # never reads teacher_ckpt
    if checkpoint is not None:
        model.load_state_dict(load_state_dict(checkpoint))
        trained = f'student and teacher from {checkpoint}'
    else:
        model.init_weights()
        if teacher_ckpt and osp.isfile(osp.expanduser(teacher_ckpt)):
            model.teacher.load_state_dict(
                load_state_dict(osp.expanduser(teacher_ckpt)))
            trained = f'teacher from {teacher_ckpt}, student untrained'
        else:
            trained = 'untrained (no checkpoint; teacher_ckpt ' + (
                'absent' if teacher_ckpt else 'not set') + ')'
    model.to(device)
    model.train()
    return model, trained
