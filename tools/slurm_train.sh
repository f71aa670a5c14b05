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
#
# Preemption: on SIGTERM or SIGUSR1 (`#SBATCH --signal=USR1@180`) train.py
# saves a checkpoint after the current iteration and exits with 75; inside a
# batch job this script then requeues it (`#SBATCH --requeue`), and the
# requeued job goes on with `--resume` (pass it on every start). srun returns
# the highest status of its tasks, or 128 + a signal if it killed one: it
# does not kill the others when one exits non-zero (--kill-on-bad-exit=0),
# so that tasks that all stop with 75 are not reported as killed; a rank
# that fails makes the others fail at their next collective, within the
# config's `env_cfg.dist_cfg.timeout`.
# docs/en/user_guides/train_test.md, "Preemption", has a batch script.
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
    --kill-on-bad-exit=0 \
    ${SRUN_ARGS} \
    python -u "$(dirname "$0")/train.py" "${CONFIG}" --launcher="slurm" \
    "${@:4}"
STATUS=$?
# 75: stopped by a signal after a checkpoint (gskd_mm.engine.PREEMPTED_EXIT_CODE).
if [ "${STATUS}" -eq 75 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
    scontrol requeue "${SLURM_JOB_ID}"
fi
exit "${STATUS}"
