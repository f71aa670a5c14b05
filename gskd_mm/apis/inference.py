# Copyright (c) gskd-mm contributors. All rights reserved.
"""Build distillers and students from configs and checkpoints; load samples.

As ``mmseg.apis.init_model`` does for a plain segmentor, for the two things
a distillation config describes: the whole distiller, and its student as a
plain MMSeg model.
"""
import os.path as osp
from typing import Optional, Tuple, Union

from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.model import BaseModel
from mmengine.registry import MODELS, DefaultScope

from ..utils import load_state_dict, register_all_modules, student_state_dict

ConfigType = Union[str, Config]


def _load_config(config: ConfigType) -> Config:
    if isinstance(config, str):
        return Config.fromfile(config)
    if isinstance(config, Config):
        return config.copy()
    raise TypeError('config must be a file path or a mmengine Config, got '
                    f'{type(config)}')


def _scope(cfg: Config) -> str:
    return cfg.get('default_scope', None) or 'mmseg'


def init_distiller(config: ConfigType,
                   checkpoint: Optional[str] = None,
                   device: str = 'cpu') -> Tuple[BaseModel, Config]:
    """Build a distiller from its config, without its teacher checkpoint.

    ``model.teacher_ckpt`` is never read: with ``checkpoint`` (a checkpoint
    of the distiller, which holds the teacher's weights too) every weight
    comes from there; without it the networks keep their initialisation.

    Args:
        config (str | Config): Distillation config (``model.architecture``
            and ``model.teacher``).
        checkpoint (str, optional): Checkpoint of that distiller. Defaults
            to None.
        device (str): Device to put the model on. Defaults to 'cpu'.

    Returns:
        tuple[BaseModel, Config]: The distiller in eval mode, and the config.

    Raises:
        ValueError: If the config is not a distillation config.
    """
    register_all_modules(init_default_scope=False)
    cfg = _load_config(config)
    if 'architecture' not in cfg.model or 'teacher' not in cfg.model:
        raise ValueError('not a distillation config (its model has no '
                         '`architecture` and `teacher`); build a plain model '
                         'with gskd_mm.apis.init_student')
    cfg.model.teacher_ckpt = None
    with DefaultScope.overwrite_default_scope(_scope(cfg)):
        model = MODELS.build(cfg.model)
    if checkpoint is not None:
        model.load_state_dict(load_state_dict(checkpoint))
    model.to(device)
    model.eval()  # MMRazor's train() override returns None, not the model
    return model, cfg


def init_student(config: ConfigType,
                 checkpoint: Optional[str] = None,
                 device: str = 'cpu') -> BaseModel:
    """Build a plain MMSeg model: the config's model or a distiller's student.

    Args:
        config (str | Config): A model config, or a distillation config
            (its ``model.architecture`` is built).
        checkpoint (str, optional): Checkpoint of that config: a plain
            model's, or a distiller's (its ``architecture.`` weights are
            loaded). Defaults to None.
        device (str): Device to put the model on. Defaults to 'cpu'.

    Returns:
        BaseModel: The segmentor in eval mode.
    """
    register_all_modules(init_default_scope=False)
    cfg = _load_config(config)
    distill = 'architecture' in cfg.model
    model_cfg = cfg.model.architecture if distill else cfg.model
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(model_cfg)
    if checkpoint is not None:
        state = load_state_dict(checkpoint)
        model.load_state_dict(student_state_dict(state) if distill else state)
    model.to(device)
    return model.eval()


def default_annotation(cfg: Config, img_path: str) -> Optional[str]:
    """The label map of an image in MMSeg's img_dir/ann_dir layout.

    Args:
        cfg (Config): Config whose test dataset gives the suffixes.
        img_path (str): Image file.

    Returns:
        str, optional: The annotation file, or None if there is none.
    """
    dataset = cfg.test_dataloader.dataset
    img_suffix = dataset.get('img_suffix', '.png')
    seg_suffix = dataset.get('seg_map_suffix', '.png')
    path = osp.abspath(img_path)
    if '/img_dir/' not in path or not path.endswith(img_suffix):
        return None
    path = path.replace('/img_dir/', '/ann_dir/')
    path = path[:len(path) - len(img_suffix)] + seg_suffix
    return path if osp.isfile(path) else None


def load_sample(cfg: Config,
                img_path: str,
                ann_path: Optional[str] = None) -> dict:
    """Run the config's test pipeline on one image (and its labels).

    Args:
        cfg (Config): Config with a ``test_dataloader``.
        img_path (str): Image file.
        ann_path (str, optional): Label map; without one, the pipeline's
            ``LoadAnnotations`` is skipped.

    Returns:
        dict: ``inputs`` and ``data_samples`` of one packed sample.

    Raises:
        FileNotFoundError: If the image or the label map does not exist.
    """
    for name, path in (('image', img_path), ('label map', ann_path)):
        if path is not None and not osp.isfile(path):
            raise FileNotFoundError(f'{name} {path} does not exist')
    dataset = cfg.test_dataloader.dataset
    pipeline = [
        t for t in dataset.pipeline
        if ann_path is not None or t['type'] != 'LoadAnnotations'
    ]
    results = dict(
        img_path=img_path,
        seg_map_path=ann_path,
        reduce_zero_label=dataset.get('reduce_zero_label', False),
        seg_fields=[],
        label_map=None)
    with DefaultScope.overwrite_default_scope(_scope(cfg)):
        return Compose(pipeline)(results)
