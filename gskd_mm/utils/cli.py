# Copyright (c) gskd-mm contributors. All rights reserved.
"""Checks of the tools' command lines: bad input ends in one line.

Every tool of ``tools/`` checks its files and numbers with these before it
builds anything, so a wrong argument ends in one line on stderr that names
the problem and its fix (exit code 2), never in a traceback.
"""
import os.path as osp
import sys
from typing import Iterable, NoReturn, Optional, Sequence

from mmengine.config import Config

#: Smallest crop side the tools accept: 4 x 4 features at stride 8.
MIN_CROP = 32


def tool_error(message: str, code: int = 2) -> NoReturn:
    """Exit the tool with ``<tool>: error: <message>`` on stderr.

    Args:
        message (str): The problem and its fix.
        code (int): The exit code. Defaults to 2 (argparse's).
    """
    print(f'{osp.basename(sys.argv[0])}: error: {message}', file=sys.stderr)
    raise SystemExit(code)


def check_file(path: Optional[str], what: str, fix: str) -> Optional[str]:
    """``path`` if it is None or a file, else :func:`tool_error`.

    Args:
        path (str, optional): The file given on the command line.
        what (str): What it is, e.g. ``'config'``.
        fix (str): What to give instead.

    Returns:
        str | None: ``path``.
    """
    if path is not None and not osp.isfile(path):
        tool_error(f'{what} {path} does not exist: {fix}')
    return path


def check_checkpoint(path: Optional[str],
                     urls: bool = False) -> Optional[str]:
    """:func:`check_file` of a checkpoint (None passes).

    Args:
        path (str, optional): The checkpoint given.
        urls (bool): Whether a URL (``scheme://...``) passes unchecked, for
            the tools that load through MMEngine. Defaults to False.

    Returns:
        str | None: ``path``.
    """
    if urls and path is not None and '://' in path:
        return path
    return check_file(
        path, 'checkpoint', 'give a .pth file that training wrote '
        '(work_dirs/<config>/iter_*.pth)')


def check_config(path: str) -> str:
    """:func:`check_file` of a config file."""
    return check_file(path, 'config', 'give a .py config, e.g. one of '
                      'configs/')


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config file, or :func:`tool_error` naming why it cannot be.

    Args:
        path (str): The config file.
        cfg_options (dict, optional): ``--cfg-options`` merged into it.

    Returns:
        Config: The config.
    """
    check_config(path)
    try:
        cfg = Config.fromfile(path)
    except Exception as error:  # any error of a user's file
        tool_error(f'cannot read config {path}: {type(error).__name__}: '
                   f'{error}')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def check_distillation_recipe(cfg: Config,
                              path: str,
                              why: str,
                              schedule: bool = True) -> Config:
    """``cfg`` if it is a whole distillation recipe, else :func:`tool_error`.

    A recipe has a distiller model (``model.architecture``, the student,
    and ``model.teacher``) and a training schedule (``train_cfg``); a plain
    MMSeg config and a ``_base_`` piece have not.

    Args:
        cfg (Config): The config read from ``path``.
        path (str): Its file.
        why (str): What the tool does with a recipe, e.g. ``'kd_budget
            compares a distillation recipe with its student trained
            alone'``.
        schedule (bool): Whether the tool needs ``train_cfg`` too.
            Defaults to True.

    Returns:
        Config: ``cfg``.
    """
    model = cfg.get('model') or {}
    missing = [
        key for key, found in (('model.architecture', 'architecture' in model),
                               ('model.teacher', 'teacher' in model),
                               ('train_cfg', 'train_cfg' in cfg
                                or not schedule)) if not found
    ]
    if missing:
        tool_error(f'{path} is not a distillation recipe (no '
                   f'{", ".join(missing)}): {why}; give a recipe of '
                   'configs/ (e.g. configs/gskd/*.py)')
    return cfg


def check_crop(crop: Optional[Sequence[int]], option: str = '--crop'
               ) -> Optional[tuple]:
    """``crop`` as a tuple if it is None or at least :data:`MIN_CROP` on
    each side, else :func:`tool_error`."""
    if crop is None:
        return None
    if min(crop) < MIN_CROP:
        tool_error(f'{option} {" ".join(map(str, crop))}: each side must be '
                   f'at least {MIN_CROP} (the networks work at stride 8), '
                   f'e.g. {option} 256 512')
    return tuple(crop)


def check_positive(args, names: Iterable[str]) -> None:
    """:func:`tool_error` unless every ``args.<name>`` given is >= 1."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            option = '--' + name.replace('_', '-')
            tool_error(f'{option} {value}: must be at least 1')
