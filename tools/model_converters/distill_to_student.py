# Copyright (c) gskd-mm contributors. All rights reserved.
"""Turn a distillation checkpoint into a plain MMSeg student.

Writes into ``out_dir``:

* ``student.pth``: the student's weights (``architecture.*`` of the
  distillation state dict, prefix removed) and the checkpoint's ``meta``
  (``dataset_meta`` included, where MMSeg's ``init_model`` reads classes
  and palette); teacher, connectors and optimizer states are dropped;
* ``student.py``: an MMSeg config of the student: the distillation config's
  ``model.architecture`` as ``model``, ``default_scope = 'mmseg'``, and the
  distillation config's test pipeline, dataloader, evaluator and loop, with
  the runtime settings that testing uses.

Both work with ``mmseg.apis.init_model``/``inference_model``,
``tools/test.py`` and MMSeg's own ``tools/test.py``.

Example::

    python tools/model_converters/distill_to_student.py \\
        configs/gskd/<config>.py work_dirs/<config>/iter_40000.pth \\
        work_dirs/<config>/student
"""
import argparse
import os.path as osp
from typing import Tuple

import torch
from mmengine.config import Config, ConfigDict
from mmengine.hub import get_config
from mmengine.utils import mkdir_or_exist

from gskd_mm.utils import read_checkpoint, student_state_dict
from gskd_mm.utils.cli import (check_checkpoint, check_distillation_recipe,
                               load_config)

# What testing the student reads from the distillation config, besides the
# model (training keys, teacher and distiller are left behind).
TEST_KEYS = ('custom_imports', 'test_pipeline', 'test_dataloader',
             'test_evaluator', 'test_cfg', 'tta_pipeline', 'tta_model',
             'env_cfg', 'default_hooks', 'vis_backends', 'visualizer',
             'log_processor', 'log_level')


def parse_args() -> argparse.Namespace:
    """Parse the command line.

    Returns:
        argparse.Namespace: The arguments.
    """
    parser = argparse.ArgumentParser(
        description='Convert a distillation checkpoint into an MMSeg '
        'student checkpoint and config')
    parser.add_argument('config', help='the distillation config')
    parser.add_argument('checkpoint', help='the distillation checkpoint')
    parser.add_argument(
        'out_dir',
        nargs='?',
        help='where to write student.pth and student.py '
        '(or give it as --out)')
    parser.add_argument('--out', help='same as out_dir')
    args = parser.parse_args()
    args.out_dir = args.out_dir or args.out
    if args.out_dir is None:
        parser.error('the output directory (out_dir or --out) is required')
    check_distillation_recipe(
        load_config(args.config), args.config, 'the converter takes the '
        'student out of a distillation checkpoint', schedule=False)
    check_checkpoint(args.checkpoint)
    return args


def student_config(cfg: Config) -> Config:
    """The MMSeg config of a distillation config's student.

    Args:
        cfg (Config): A distillation config (``model.architecture`` is the
            student's model dict, or ``dict(cfg_path=...)`` as MMRazor
            allows).

    Returns:
        Config: ``model`` (the student), ``default_scope='mmseg'`` and the
        test settings of ``cfg``.
    """
    model = cfg.model.architecture
    if 'cfg_path' in model:
        model = get_config(model.cfg_path).model
    if 'data_preprocessor' not in model and 'data_preprocessor' in cfg.model:
        # The algorithm's preprocessor, which the student then used.
        model = ConfigDict(
            model, data_preprocessor=cfg.model.data_preprocessor)
    student = dict(model=model, default_scope='mmseg')
    student.update((key, cfg[key]) for key in TEST_KEYS if key in cfg)
    if 'test_pipeline' not in student and 'test_dataloader' in cfg:
        # inference_model reads the pipeline from here.
        pipeline = cfg.test_dataloader.dataset.get('pipeline')
        if pipeline is not None:
            student['test_pipeline'] = pipeline
    return Config(student)


def convert(config: str, checkpoint: str, out_dir: str) -> Tuple[str, str]:
    """Write the student checkpoint and config of a distillation run.

    Args:
        config (str): The distillation config file.
        checkpoint (str): The distillation checkpoint file.
        out_dir (str): The output directory.

    Returns:
        tuple[str, str]: The paths of ``student.pth`` and ``student.py``.
    """
    ckpt = read_checkpoint(checkpoint)
    mkdir_or_exist(out_dir)
    ckpt_path = osp.join(out_dir, 'student.pth')
    cfg_path = osp.join(out_dir, 'student.py')
    # Teacher, connectors and optimizer states are dropped.
    torch.save(
        dict(
            meta=ckpt.get('meta', {}),
            state_dict=student_state_dict(ckpt.get('state_dict', ckpt))),
        ckpt_path)
    student_config(Config.fromfile(config)).dump(cfg_path)
    return ckpt_path, cfg_path


def main() -> None:
    """Convert as the command line says."""
    args = parse_args()
    for path in convert(args.config, args.checkpoint, args.out_dir):
        print(f'Saved {path}')


if __name__ == '__main__':
    main()
