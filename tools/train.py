# Copyright (c) gskd-mm contributors. All rights reserved.
"""Train a model (a distillation algorithm or a plain segmentor).

MMRazor's ``tools/train.py`` for gskd-mm (installed, e.g. by ``make setup``
or ``pip install -e .``; ``tools/dist_train.sh`` puts the checkout on
``PYTHONPATH``): it needs no ``mim``, and it imports ``gskd_mm`` before
MMRazor, which keeps MMRazor importable on torch 2.

Example::

    python tools/train.py configs/gskd/<config>.py
    python tools/train.py <config>.py --work-dir work_dirs/run --resume
    bash tools/dist_train.sh <config>.py 4  # 4 GPUs

On SIGTERM or SIGUSR1 it saves a checkpoint after the current iteration and
exits with 75 (``gskd_mm.engine.PREEMPTED_EXIT_CODE``); ``--resume`` goes on
from it (docs/en/user_guides/train_test.md, "Preemption").
"""
import argparse
import datetime
import os
import os.path as osp
import sys

import torch.distributed as torch_dist
from mmengine.config import Config, DictAction
from mmengine.device import get_device
from mmengine.runner import Runner

# Importing gskd_mm keeps MMRazor importable on torch 2 and lets torch's
# weights-only loading (``--resume``, ``load_from``) read MMEngine checkpoints.
from gskd_mm.engine import (PREEMPTED_EXIT_CODE, enable_amp,
                            enable_preemption, stopped_by_signal)
from gskd_mm.utils import (destroy_process_group, register_all_modules,
                           restore_drawn_seed)
from gskd_mm.utils.cli import check_config


def parse_args() -> argparse.Namespace:
    """Parse the command line.

    Returns:
        argparse.Namespace: The arguments.
    """
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        action='store_true',
        default=False,
        help='resume from the latest checkpoint in the work_dir automatically')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training: every optimizer '
        'wrapper becomes AmpOptimWrapper (float16; bfloat16 with '
        '--cfg-options optim_wrapper.dtype=bfloat16)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR')
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
    # `torch.distributed.launch` of torch >= 2.0 passes `--local-rank`;
    # torchrun passes none and sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    check_config(args.config)  # one line, not a traceback
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def init_cpu_distributed(cfg: Config) -> None:
    """Let ``--launcher pytorch`` train on machines without CUDA (gloo).

    MMEngine 0.10 cannot: whatever the backend, its ``init_dist`` calls
    ``torch.cuda.set_device(LOCAL_RANK)`` and its runner wraps the model in
    DDP with ``device_ids=[LOCAL_RANK]``, both of which fail for CPU. So
    this starts the process group itself (the runner then skips its own
    ``init_dist``) and wraps the model (with MMEngine's DDP wrapper, or the
    config's ``model_wrapper_cfg``, a DDP subclass) without ``device_ids``.
    It does nothing where MMEngine finds an accelerator (CUDA, NPU, MLU,
    ...) or the launcher is not ``pytorch``.

    Args:
        cfg (Config): The training config, changed in place.
    """
    if cfg.launcher != 'pytorch' or get_device() != 'cpu' or \
            torch_dist.is_initialized():
        return
    dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg', {})
    backend = dist_cfg.get('backend', 'nccl')
    if backend != 'gloo':
        raise RuntimeError(
            f'CUDA is not available: the {backend!r} backend cannot train '
            'on CPU. Use gloo: --cfg-options env_cfg.dist_cfg.backend=gloo')
    timeout = dist_cfg.get('timeout')
    kwargs = {} if timeout is None else dict(
        timeout=datetime.timedelta(seconds=timeout))
    torch_dist.init_process_group(backend='gloo', **kwargs)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = dict(wrapper, device_ids=None)


def main() -> None:
    """Build the runner from the config and train."""
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

    if args.amp:
        enable_amp(cfg)

    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError('Can not find "auto_scale_lr.base_batch_size" '
                               'in your configuration file.')
        cfg.auto_scale_lr.enable = True

    cfg.resume = args.resume
    # A resumed run without a seed in its config gets its checkpoint's,
    # before the dataloader is seeded; SIGTERM/SIGUSR1 stop it cleanly.
    restore_drawn_seed(cfg)
    enable_preemption(cfg)
    init_cpu_distributed(cfg)

    runner = Runner.from_cfg(cfg)
    runner.train()
    preempted = stopped_by_signal(runner)
    # MMEngine leaves the process group to interpreter exit, where a gloo
    # group's threads can abort the process ("terminate called without an
    # active exception") after training succeeded: the DDP wrapper goes
    # first (with the runner, which its loops refer to), then the group.
    del runner
    destroy_process_group()
    if preempted:  # a checkpoint was saved: requeue with --resume
        sys.exit(PREEMPTED_EXIT_CODE)


if __name__ == '__main__':
    main()
