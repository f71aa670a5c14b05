# Copyright (c) gskd-mm contributors. All rights reserved.
"""Run a recipe offline: no checkpoint or ImageNet download, another crop.

The analysis tools (the loss gradients, the step benchmark, the compute
budget), the tests and the benchmarks run the shipped recipes on generated
data with it: one path that shrinks a recipe to a crop, one that removes
its downloads.
"""
import inspect
import os.path as osp
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Tuple

from mmengine.config import Config, ConfigDict
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmrazor.registry import MODELS

from ..models.algorithms import teacher_model_config
from ..models.architectures import SAGANDiscriminator
from ..utils import load_state_dict, register_all_modules

__all__ = [
    'OfflineDistiller', 'build_offline_distiller', 'discriminator_stages',
    'offline_recipe', 'recipe_crop'
]

#: The student's output stride, at which the discriminator sees logits.
LOGITS_STRIDE = 8


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


def discriminator_stages(cfg: Config) -> Optional[int]:
    """The stages of a recipe's adversarial discriminator, if it has one.

    Args:
        cfg (Config): A recipe.

    Returns:
        int | None: ``model.discriminator.num_stages`` (the discriminator's
        default where the recipe does not set it), None without one.
    """
    discriminator = cfg.model.get('discriminator')
    if discriminator is None:
        return None
    default = inspect.signature(
        SAGANDiscriminator).parameters['num_stages'].default
    return discriminator.get('num_stages', default)


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

    No teacher checkpoint, no ImageNet initialisation, a ``cfg_path``
    teacher spelled out (:func:`teacher_without_downloads`), data loaded in
    the main process. With a crop, the pipeline and every
    ``data_preprocessor.size`` shrink to it, and a discriminator keeps the
    stride-2 stages that fit (:meth:`SAGANDiscriminator.stages_that_fit`).

    Args:
        cfg (Config): A loaded recipe, or a plain segmentor's config
            (e.g. a student-only baseline,
            :func:`~gskd_mm.analysis.student_only_config`); modified in
            place.
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
    if 'teacher' in cfg.model:
        cfg.model.teacher_ckpt = None
        # Spelled out first, so that the changes below reach the teacher
        # too: DDP refuses a CPU model with any SyncBN, the frozen
        # teacher's included.
        cfg.model.teacher = teacher_without_downloads(cfg.model.teacher)
    student = cfg.model.get('architecture', cfg.model)
    student.pretrained = None
    student.backbone.init_cfg = None
    stages = discriminator_stages(cfg)
    if crop is not None and stages is not None:
        cfg.model.discriminator.num_stages = \
            SAGANDiscriminator.stages_that_fit(
                min(crop) // LOGITS_STRIDE, stages)
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
        cfg (Config): A distillation recipe, or a plain segmentor's config.

    Returns:
        tuple[int, int]: (h, w).
    """
    model = cfg.model.get('architecture', cfg.model)
    size = model.get('data_preprocessor', {}).get('size')
    if size:
        return tuple(size)
    for transform in cfg.get('train_pipeline', []):
        if transform.get('type') == 'RandomCrop':
            return tuple(transform['crop_size'])
    raise ValueError('the recipe has no crop (student data_preprocessor '
                     'size, or RandomCrop in train_pipeline): pass --crop')


@dataclass
class OfflineDistiller:
    """A recipe's distiller built offline, and where its weights came from.

    Attributes:
        model (BaseModel): The distiller, in train mode.
        student_weights (str | None): The checkpoint the student's weights
            were loaded from; None: its initialisation.
        teacher_weights (str | None): The checkpoint the teacher's weights
            were loaded from; None: its initialisation.
    """
    model: BaseModel
    student_weights: Optional[str]
    teacher_weights: Optional[str]

    @property
    def untrained(self) -> bool:
        """Whether no network has loaded weights."""
        return self.student_weights is None and self.teacher_weights is None

    def describe(self) -> str:
        """Which networks are trained, in words."""
        if self.student_weights is not None:
            return f'student and teacher from {self.student_weights}'
        if self.teacher_weights is not None:
            return f'teacher from {self.teacher_weights}, student untrained'
        return 'untrained'


def build_offline_distiller(cfg: Config,
                            checkpoint: Optional[str] = None,
                            teacher_ckpt: Optional[str] = None,
                            device: str = 'cpu') -> OfflineDistiller:
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
        OfflineDistiller: The model and where its weights came from.
    """
    register_all_modules(init_default_scope=False)
    model_cfg = cfg.model.copy()
    model_cfg.teacher_ckpt = None  # loaded below, where it exists
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', None) or 'mmseg'):
        model = MODELS.build(model_cfg)
    built = OfflineDistiller(model, None, None)
    if checkpoint is not None:
        model.load_state_dict(load_state_dict(checkpoint))
        built.student_weights = built.teacher_weights = checkpoint
    else:
        model.init_weights()
        if teacher_ckpt and osp.isfile(osp.expanduser(teacher_ckpt)):
            model.teacher.load_state_dict(
                load_state_dict(osp.expanduser(teacher_ckpt)))
            built.teacher_weights = teacher_ckpt
    model.to(device)
    model.train()
    return built
