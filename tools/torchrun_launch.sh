# Sourced by tools/dist_train.sh and tools/dist_test.sh: checks the launch variables and starts torchrun.
#   torchrun_launch GPUS SCRIPT [script args...]   (SCRIPT: a file of tools/)
# Variables: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500), PYTHON (python).
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Argument checks: a clear message and exit status 2 instead of a torchrun traceback.
die() { echo "error: $*" >&2; exit 2; }
positive_int() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"; }

torchrun_launch() {
    local gpus=$1 script=$2
    shift 2
    positive_int "GPUS (processes per node)" "$gpus"
    positive_int NNODES "$NNODES"
    [[ "$NODE_RANK" =~ ^[0-9]+$ ]] && (( 10#$NODE_RANK < NNODES )) \
        || die "NODE_RANK must be an integer from 0 to NNODES-1 ($((NNODES - 1))), got '$NODE_RANK'"
    [[ "$PORT" =~ ^[0-9]+$ ]] && (( 10#$PORT >= 1 && 10#$PORT <= 65535 )) \
        || die "PORT must be a port number (1-65535), got '$PORT'"
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
    "$PYTHON" -m torch.distributed.run \
        --nnodes="$NNODES" \
        --node_rank="$NODE_RANK" \
        --master_addr="$MASTER_ADDR" \
        --master_port="$PORT" \
        --nproc_per_node="$gpus" \
        "$ROOT/tools/$script" "$@"
}
