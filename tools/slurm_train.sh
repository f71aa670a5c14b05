#!/usr/bin/env bash
# Distributed training under Slurm: srun starts one task per GPU and
# `--launcher slurm` makes MMEngine read SLURM_PROCID/SLURM_NTASKS/
# SLURM_NODELIST (master address: the first node; port: MASTER_PORT, or
# 29500).
#
#   GPUS=8 GPUS_PER_NODE=8 bash tools/slurm_train.sh PARTITION JOB_NAME \
#       CONFIG [train.py options, e.g. --work-dir DIR]
#
# The backend is the config's `env_cfg.dist_cfg.backend` (MMEngine's default
# 'nccl'); like `--launcher pytorch`, `--launcher slurm` calls
# torch.cuda.set_device, so every task needs a GPU.
set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    python -u "$(dirname "$0")/train.py" "${CONFIG}" --launcher="slurm" \
    "${@:4}"
