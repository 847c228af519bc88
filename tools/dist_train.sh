#!/usr/bin/env bash
# Distributed training with torchrun: one process per GPU (or per CPU worker: without CUDA, tools/train.py switches
# the backend to gloo).
#
#   bash tools/dist_train.sh CONFIG GPUS [train.py args...]
#
# Multi-node (run on every node, same MASTER_ADDR/PORT; NODE_RANK 0..NNODES-1):
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
# Slurm clusters: tools/slurm_train.sh. PYTHON selects the interpreter (default: python).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [tools/train.py args...]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
source "$(dirname "${BASH_SOURCE[0]}")/torchrun_launch.sh"
torchrun_launch "$GPUS" train.py "$CONFIG" --launcher pytorch "${@:3}"
