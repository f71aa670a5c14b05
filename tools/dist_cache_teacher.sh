#!/usr/bin/env bash
# The teacher cache pass over several processes (one per GPU), started by
# torchrun; each takes shards rank::world_size. Without CUDA the processes
# run on the CPU over gloo.
#
#   bash tools/dist_cache_teacher.sh CONFIG GPUS [cache_teacher.py options]
CONFIG=$1
GPUS=$2
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
    "$(dirname "$0")/cache_teacher.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
