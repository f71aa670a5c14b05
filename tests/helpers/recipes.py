# Copyright (c) gskd-mm contributors. All rights reserved.
"""Run the real recipes small: CPU-sized crops, no downloads, generated
data."""
import copy
import functools
import os.path as osp
from typing import Any, Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict
from mmengine.hub import get_config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope, init_default_scope
from mmrazor.registry import MODELS

from gskd_mm.analysis import offline_recipe
from gskd_mm.testing import generated_batch
from gskd_mm.utils import register_all_modules

# The CPU demo's small teacher and student (projects/gskd_demo).
DEMO_MODELS = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'projects',
    'gskd_demo', 'configs', '_base_', 'models', 'deeplabv3_r18-d4_demo.py')


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


def shrink_recipe(cfg: Config,
                  crop: Optional[Tuple[int, int]] = (64, 64),
                  sync_bn_to_bn: bool = False,
                  data_root: Optional[str] = None) -> Config:
    """Make a distillation recipe runnable on a CPU in tests: the package's
    :func:`~gskd_mm.analysis.offline_recipe`, at a 64 x 64 crop by default.

    Args:
        cfg (Config): A loaded recipe; modified in place.
        crop (tuple[int, int], optional): (h, w) crop; None keeps the
            recipe's crop and image scales. Defaults to (64, 64).
        sync_bn_to_bn (bool): Replace SyncBN by BN, for multi-process CPU
            (gloo) runs. Defaults to False.
        data_root (str, optional): New root of every dataset.

    Returns:
        Config: ``cfg``.
    """
    return offline_recipe(cfg, crop, data_root, sync_bn_to_bn)


def train_one_step(cfg: Config,
                   num_images: int = 2,
                   size: Tuple[int, int] = (64, 64)) -> Tuple[Any, dict]:
    """Build a shrunk recipe and train it one step on a generated batch.

    GSKD samples every labelled pixel (``valid_mask='labeled'``): generated
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
    batch = generated_batch(num_images, size, num_classes_of(cfg))
    return model, model.train_step(batch, optim)


def num_classes_of(cfg: Config) -> int:
    """Number of classes of the recipe's student."""
    head: ConfigDict = cfg.model.architecture.decode_head
    return head.num_classes


def demo_networks() -> Tuple[torch.nn.Module, torch.nn.Module]:
    """The CPU demo's student and teacher, seeded, in eval mode.

    Returns:
        tuple[nn.Module, nn.Module]: Student and teacher segmentors.
    """
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(DEMO_MODELS)
    with DefaultScope.overwrite_default_scope('mmseg'):
        torch.manual_seed(0)
        student = MODELS.build(cfg.model).eval()
        teacher = MODELS.build(cfg.teacher).eval()
    return student, teacher
