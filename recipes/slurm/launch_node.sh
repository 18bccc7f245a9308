#!/usr/bin/env bash
# One node's share of a multi-node run: `accelerate launch` with this node's machine rank. train.sbatch runs it
# through `srun`, one task per node; tests/test_cluster.py runs it twice on one machine (machine rank 0 and 1).
#   launch_node.sh ACCELERATE_CONFIG [ACCELERATE_LAUNCH_OPTIONS...] (-m MODULE | SCRIPT) ARGS...
# Environment: NUM_MACHINES, MAIN_PROCESS_IP (machine rank 0's address), MAIN_PROCESS_PORT (default 29500),
# GPUS_PER_NODE (default 8), and SLURM_PROCID, this node's task rank = machine rank (srun sets it).
set -euo pipefail
config=$1
shift
gpus_per_node=${GPUS_PER_NODE:-8}
# train.sbatch sends USR1 to every process of the job step near the time limit: the training processes save and stop
# (rs_trl.preemption), the launcher must not die of it first. Ignored here; the training processes set their own.
trap '' USR1
exec accelerate launch --config_file "$config" \
  --num_machines "${NUM_MACHINES:?}" --num_processes "$((NUM_MACHINES * gpus_per_node))" \
  --machine_rank "${SLURM_PROCID:?}" --main_process_ip "${MAIN_PROCESS_IP:?}" \
  --main_process_port "${MAIN_PROCESS_PORT:-29500}" --rdzv_backend static "$@"
