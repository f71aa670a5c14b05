# Copyright (c) gskd-mm contributors. All rights reserved.
"""Test (and evaluate) a model: a distillation algorithm or a segmentor.

MMSeg's ``tools/test.py`` for gskd-mm (installed, e.g. by ``make setup``
or ``pip install -e .``; ``tools/dist_test.sh`` puts the checkout on
``PYTHONPATH``). A distillation
config tests its student (``EvalTeacherDistill`` predicts with its
``architecture``); the student config written by
``tools/model_converters/distill_to_student.py`` tests the same student as a
plain MMSeg model.

Example::

    python tools/test.py <config>.py work_dirs/<config>/iter_40000.pth
    python tools/test.py <config>.py <ckpt>.pth --show-dir vis --out preds
    bash tools/dist_test.sh <config>.py <ckpt>.pth 4  # 4 GPUs
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

# Importing gskd_mm keeps MMRazor importable on torch 2 and lets torch's
# weights-only loading (``--resume``, ``load_from``) read MMEngine checkpoints.
from gskd_mm.utils import destroy_process_group, register_all_modules
from gskd_mm.utils.cli import check_checkpoint, check_config


def parse_args() -> argparse.Namespace:
    """Parse the command line.

    Returns:
        argparse.Namespace: The arguments.
    """
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='the directory to save output prediction for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. '
        'If specified, it will be automatically saved '
        'to the work_dir/timestamp/show_dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--tta', action='store_true', help='Test time augmentation')
    # `torch.distributed.launch` of torch >= 2.0 passes `--local-rank`;
    # torchrun passes none and sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    check_config(args.config)  # one line, not a traceback
    check_checkpoint(args.checkpoint, urls=True)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def trigger_visualization_hook(cfg: Config,
                               args: argparse.Namespace) -> Config:
    """Turn on the config's ``SegVisualizationHook`` for ``--show(-dir)``.

    Args:
        cfg (Config): The test config, changed in place.
        args (argparse.Namespace): The command line arguments.

    Returns:
        Config: ``cfg``.
    """
    default_hooks = cfg.default_hooks
    if 'visualization' not in default_hooks:
        raise RuntimeError(
            'VisualizationHook must be included in default_hooks.'
            'refer to usage '
            '"visualization=dict(type=\'VisualizationHook\')"')
    visualization_hook = default_hooks['visualization']
    visualization_hook['draw'] = True
    if args.show:
        visualization_hook['show'] = True
        visualization_hook['wait_time'] = args.wait_time
    if args.show_dir:
        cfg.visualizer['save_dir'] = args.show_dir
    return cfg


def main() -> None:
    """Build the runner from the config and test the checkpoint."""
    args = parse_args()
    register_all_modules(init_default_scope=False)

    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # work_dir is determined in this priority: CLI > segment in file > filename
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    if args.tta:
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model

    # add output_dir in metric
    if args.out is not None:
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True

    runner = Runner.from_cfg(cfg)
    runner.test()
    # The DDP wrapper (with the runner), then the process group, as in
    # tools/train.py.
    del runner
    destroy_process_group()


if __name__ == '__main__':
    main()
