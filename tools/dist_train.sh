#!/usr/bin/env bash
# Distributed training on one or more nodes: one process per GPU, started by
# torchrun, which sets RANK/LOCAL_RANK/WORLD_SIZE for `--launcher pytorch`.
#
#   bash tools/dist_train.sh CONFIG GPUS [train.py options]
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh ...
#
# The backend is the config's `env_cfg.dist_cfg.backend`; MMEngine's Runner
# defaults to 'nccl' and does not fall back to 'gloo' without CUDA. With
# CUDA, this is MMEngine's usual `--launcher pytorch`. Without CUDA (CPU
# runs), MMEngine 0.10 alone fails whatever the backend (its init_dist calls
# torch.cuda.set_device, and it builds DDP with device_ids=[LOCAL_RANK]);
# tools/train.py then starts the gloo process group itself and wraps the
# model without device_ids. CPU runs need gloo and no SyncBN (DDP refuses
# SyncBN on CPU):
#   bash tools/dist_train.sh CONFIG 2 \
#       --cfg-options env_cfg.dist_cfg.backend=gloo
#
# torchrun replaces this shell (exec), so a signal sent to it reaches
# torchrun: on SIGTERM it passes the signal to every rank, which saves a
# checkpoint after its current iteration and exits with 75; torchrun then
# exits non-zero, and `--resume` goes on from that checkpoint
# (docs/en/user_guides/train_test.md, "Preemption"). If a rank dies,
# torchrun stops the others and names the lost rank in its report.
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
exec torchrun \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
