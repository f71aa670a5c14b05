#!/usr/bin/env bash
# Distributed testing on one or more nodes: one process per GPU, started by
# torchrun, which sets RANK/LOCAL_RANK/WORLD_SIZE for `--launcher pytorch`.
#
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash tools/dist_test.sh ...
#
# As for tools/dist_train.sh: the backend is the config's
# `env_cfg.dist_cfg.backend` (MMEngine's default 'nccl', with no fallback to
# 'gloo' without CUDA), and MMEngine's `--launcher pytorch` needs a GPU per
# process whatever the backend; on a CPU-only machine run tools/test.py
# directly.
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
torchrun \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/test.py" \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
