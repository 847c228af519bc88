#!/usr/bin/env bash
# Distributed testing with torchrun (see tools/dist_train.sh for the multi-node variables).
#
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [tools/test.py args...]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
source "$(dirname "${BASH_SOURCE[0]}")/torchrun_launch.sh"
torchrun_launch "$GPUS" test.py "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
