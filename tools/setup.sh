#!/usr/bin/env bash
# Idempotent set-up of shufflenet_det: a virtualenv with an OpenMMLab stack and this package (editable).
#
#   bash tools/setup.sh                   # the pinned stack (torch 2.13) in .venv; `make test` / `make main` call it
#   STACK=openmmlab bash tools/setup.sh   # the OpenMMLab-standard stack (torch 2.1.2 + torchvision 0.16.2, numpy 1.x,
#                                         # mmpretrain) in .venv-openmmlab; `make test-openmmlab` calls it
#   SETUP_FORCE=1 bash tools/setup.sh     # re-run every step
#
# Both return in seconds once done. Pinned stack: the active virtualenv ($VIRTUAL_ENV) is used when there is one,
# else .venv in the repo root is made. openmmlab stack: always .venv-openmmlab (or $OPENMMLAB_VENV).
# CUDA: when `nvidia-smi -L` lists a GPU, torch 2.13 comes from PyPI's CUDA build with the matching torchvision 0.28,
# and mmcv's ops are built with CUDA where nvcc exists. Without a GPU: the CPU wheel of torch and NO torchvision
# (the PyPI torchvision is a CUDA build; a broken `import torchvision` crashes mmengine's Runner).
# Every pip call goes through requirements/constraints.txt, so no later step can move the pinned stack.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STACK="${STACK:-pinned}"
case "$STACK" in
  pinned) CONSTRAINTS="$ROOT/requirements/constraints.txt" ;;
  openmmlab) CONSTRAINTS="$ROOT/requirements/constraints-openmmlab.txt" ;;
  *) printf '[setup] ERROR: STACK=%s is not a stack; allowed: pinned (default), openmmlab\n' "$STACK" >&2; exit 2 ;;
esac
TOTAL=7
step() { printf '\n[setup %s/%s] %s\n' "$1" "$TOTAL" "$2"; }
die() { printf '\n[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- 0. where to install
if [[ $STACK == openmmlab ]]; then
  VENV="${OPENMMLAB_VENV:-$ROOT/.venv-openmmlab}"
elif [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then
  VENV="$VIRTUAL_ENV"
else
  VENV="$ROOT/.venv"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
STAMP="$VENV/.shufflenet_det_setup"

# The checkout is part of the inputs: the editable install points at one checkout, and a virtualenv shared with
# another one (a CI clone with the environments linked in) must be pointed back here.
fingerprint() {
  { echo "$STACK"; echo "$ROOT"; cat "$ROOT/pyproject.toml" "$ROOT"/requirements/*.txt "$ROOT/tools/setup.sh"; } \
    | sha256sum | cut -d' ' -f1
}

# Fast path: same inputs as the last successful set-up, and the stack still imports, with shufflenet_det from this
# checkout (checked from / so that the current folder does not shadow the installed package).
if [[ -z "${SETUP_FORCE:-}" && -f "$STAMP" && "$(cat "$STAMP")" == "$(fingerprint)" ]] \
   && (cd / && "$PY" -c "import os, sys, shufflenet_det, mmcv.ops, mmdet
sys.exit(os.path.realpath(shufflenet_det.__file__) != os.path.realpath(sys.argv[1]))" "$ROOT/shufflenet_det/__init__.py") >/dev/null 2>&1; then
  echo "[setup] environment $VENV is up to date (rm $STAMP or SETUP_FORCE=1 to redo)"
  exit 0
fi

has_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then has_gpu=1; fi

# ---------------------------------------------------------------- 1. prerequisites
step 1 "checking the interpreter, Python headers and C++ compiler"
BASE_PY="${PYTHON:-python3}"
if [[ ! -x "$PY" ]]; then
  command -v "$BASE_PY" >/dev/null 2>&1 || die "no '$BASE_PY' on PATH: install Python >= 3.10 (or set PYTHON=/path/to/python3)"
  "$BASE_PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || die "$("$BASE_PY" -V 2>&1) is too old: shufflenet_det needs Python >= 3.10 (set PYTHON=/path/to/python3.11)"
  "$BASE_PY" -c 'import venv, ensurepip' 2>/dev/null \
    || die "'$BASE_PY' lacks venv/ensurepip: install the python3-venv package (Debian/Ubuntu: apt-get install python3-venv)"
fi
CHECK_PY="$PY"; [[ -x "$PY" ]] || CHECK_PY="$BASE_PY"
INCLUDE="$("$CHECK_PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
need_build=1
if [[ -x "$PY" ]] && "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" >/dev/null 2>&1; then need_build=0; fi
if [[ $need_build == 1 ]]; then
  [[ -f "$INCLUDE/Python.h" ]] || die "Python headers not found ($INCLUDE/Python.h): mmcv's C++ ops need them (Debian/Ubuntu: apt-get install python3-dev)"
  command -v "${CXX:-c++}" >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
    || die "no C++ compiler (c++/g++) on PATH: mmcv 2.1.0 is built from source (Debian/Ubuntu: apt-get install build-essential)"
fi
echo "  python: $("$CHECK_PY" -V 2>&1), headers: $INCLUDE, GPU: $([[ $has_gpu == 1 ]] && echo yes || echo no)"

# ---------------------------------------------------------------- 2. virtualenv
step 2 "virtualenv at $VENV"
if [[ ! -x "$PY" ]]; then
  "$BASE_PY" -m venv "$VENV"
  echo "  created"
else
  echo "  exists"
fi
"${PIP[@]}" install -q -c "$CONSTRAINTS" "setuptools>=77,<82" wheel ninja psutil

# ---------------------------------------------------------------- 3. torch
if [[ $STACK == openmmlab ]]; then
  step 3 "torch 2.1.2 + torchvision 0.16.2 (PyPI's CUDA builds; they also run on a CPU) and numpy 1.x"
  "${PIP[@]}" install -c "$CONSTRAINTS" "torch==2.1.2" "torchvision==0.16.2" "numpy<2"
elif [[ $has_gpu == 1 ]]; then
  step 3 "torch 2.13 (CUDA build + torchvision 0.28)"
  "${PIP[@]}" install -c "$CONSTRAINTS" "torch==2.13.0" "torchvision==0.28.0"
else
  step 3 "torch 2.13 (CPU build, no torchvision)"
  "${PIP[@]}" install -c "$CONSTRAINTS" "torch==2.13.0"
  if "$PY" -c "import importlib.util as u; import sys; sys.exit(u.find_spec('torchvision') is None)"; then
    if ! "$PY" -c "import torchvision" >/dev/null 2>&1; then
      echo "  removing a torchvision that cannot be imported beside the CPU torch (it would crash mmengine's Runner)"
      "${PIP[@]}" uninstall -y -q torchvision
    fi
  fi
fi

# ---------------------------------------------------------------- 4. mmcv from source
step 4 "mmcv 2.1.0 with its C++ ops"
if [[ $need_build == 1 ]]; then
  export MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}"
  if [[ $has_gpu == 1 ]] && command -v nvcc >/dev/null 2>&1; then
    export FORCE_CUDA=1
    echo "  building CUDA + CPU ops (nvcc: $(command -v nvcc))"
  else
    export FORCE_CUDA=0
    echo "  building the CPU ops: about 8-10 min on 2 cores the first time (pip caches the wheel afterwards)"
  fi
  # pip caches the built wheel keyed on the sdist only, not on the torch it was compiled against: one stack must
  # never get the other's wheel (wrong ABI). mmcv is built with a pip cache of its own per torch version (and CUDA
  # build), so a second set-up of the same stack still reuses its wheel.
  TORCH_TAG="$("$PY" -c 'import torch; print(torch.__version__)')-ops$FORCE_CUDA"
  MMCV_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/shufflenet_det/mmcv-torch-$TORCH_TAG"
  echo "  pip cache for this mmcv build: $MMCV_CACHE"
  "${PIP[@]}" install -c "$CONSTRAINTS" --no-build-isolation --cache-dir "$MMCV_CACHE" "mmcv==2.1.0"
else
  echo "  mmcv 2.1.0 with ops already installed"
fi

# ---------------------------------------------------------------- 5. the project and its stack
EXTRAS=dev
[[ $STACK == openmmlab ]] && EXTRAS=dev,mmpretrain
step 5 "mmengine, mmdet, pycocotools and shufflenet_det (editable, extras: $EXTRAS)"
"${PIP[@]}" install -c "$CONSTRAINTS" --no-build-isolation -e "$ROOT[$EXTRAS]"

# ---------------------------------------------------------------- 6. deployment packages
if [[ $STACK == openmmlab ]]; then
  step 6 "export packages (onnx, onnxruntime, onnxslim)"
  "${PIP[@]}" install -c "$CONSTRAINTS" onnx onnxruntime onnxslim
else
step 6 "deployment packages (onnx, onnxruntime, onnxslim, pnnx, ncnn; mmdeploy 1.3.1 without its pins)"
if [[ -f "$ROOT/requirements/deploy.txt" ]]; then
  "${PIP[@]}" install -c "$CONSTRAINTS" -r "$ROOT/requirements/deploy.txt"
fi
if [[ -f "$ROOT/requirements/mmdeploy.txt" ]]; then
  # mmdeploy 1.3.1 pins old onnx/protobuf: its own requirements are replaced by requirements/deploy.txt.
  "${PIP[@]}" install -c "$CONSTRAINTS" --no-deps -r "$ROOT/requirements/mmdeploy.txt"
fi
fi

# ---------------------------------------------------------------- 7. verify
step 7 "verifying the stack"
(cd / && STACK="$STACK" "$PY" - <<'EOF'
import importlib.util, os, sys
import setuptools, torch, mmcv, mmengine, mmdet
from mmcv.ops import nms  # the compiled ops
import shufflenet_det
from mmdet.registry import MODELS
expected = {'pinned': '2.13', 'openmmlab': '2.1.2'}[os.environ['STACK']]
assert torch.__version__.startswith(expected), f'torch {torch.__version__}, expected {expected}'
if os.environ['STACK'] == 'openmmlab':
    import mmpretrain, numpy, torchvision  # the standard stack has all three, and they import
    assert numpy.__version__.startswith('1.'), numpy.__version__
assert int(setuptools.__version__.split('.')[0]) < 82, f'setuptools {setuptools.__version__} lacks pkg_resources'
if importlib.util.find_spec('torchvision') is not None:
    import torchvision  # must import cleanly when present
print(f'  torch {torch.__version__}, mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, '
      f'mmdet {mmdet.__version__}, shufflenet_det {shufflenet_det.__version__}, '
      f'setuptools {setuptools.__version__}, CUDA available: {torch.cuda.is_available()}')
EOF
) || die "the installed stack does not import; see the messages above"
fingerprint > "$STAMP"
echo "[setup] done: $VENV"
