#!/usr/bin/env bash
# Run the torch-free runtime (shufflenet_det/runtime/) on aarch64 under qemu-user emulation, as copied to a board,
# and compare its detections with the host's (docs/deployment.md, "Checking it on aarch64 under emulation").
#
#   bash tools/deploy/emulate_aarch64.sh [MODEL.param PICTURE]      # as root (apt-get, debootstrap, chroot)
#
# 1. host packages qemu-user-static, binfmt-support and debootstrap (apt-get install, when missing);
# 2. a Debian arm64 root in $WORK/rootfs: `debootstrap --foreign --arch=arm64 --include=python3,python3-pip`, every
#    downloaded package unpacked (dpkg-deb -x; Python needs no maintainer script). Commands run in it as
#    `chroot ROOT /usr/bin/qemu-aarch64-static /usr/bin/python3 ...`, which needs no binfmt_misc registration (where
#    binfmt-support could register qemu, the arm64 binaries also run directly);
# 3. PyPI's aarch64 wheels of numpy and ncnn, the host's versions, fetched by the host's pip (`pip download
#    --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --only-binary=:all:`: numpy >= 2.3 ships
#    manylinux_2_28 wheels only; Debian 12 has glibc 2.36) and installed offline by the root's pip;
# 4. the model: MODEL.param (with its .bin and .json) and PICTURE, or else the tests' small lite detector
#    (tests/deploy_fixtures.spread_lite) exported here at 128x128 with a generated picture;
# 5. the folder shufflenet_det/runtime/ copied alone to ROOT/board/runtime and run there as `python -m runtime ncnn`,
#    the same command on the host as `python -m shufflenet_det.runtime ncnn` (one thread each);
# 6. the two detection lists compared with the ncnn export's rule (shufflenet_det.deploy.parity: 1 px, 5e-3 of
#    score, equal labels; ncnn computes in fp16 where the CPU has it, as ARMv8.2 does).
# Exit status 0 when they agree, 1 when they do not, 2 on a usage or set-up error. The root and the wheels are kept
# in $WORK for the next run. Environment: WORK (default work_dirs/emulate_aarch64), PYTHON (default .venv/bin/python),
# SUITE (default bookworm), MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="$(mkdir -p "${WORK:-$REPO/work_dirs/emulate_aarch64}" && cd "${WORK:-$REPO/work_dirs/emulate_aarch64}" && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
ROOT="$WORK/rootfs"
QEMU=/usr/bin/qemu-aarch64-static

die() { echo "error: $*" >&2; exit 2; }
step() { echo "[emulate_aarch64] $*"; }

if [ $# -ne 0 ] && [ $# -ne 2 ]; then
    die "usage: $0 [MODEL.param PICTURE] (no arguments: export the tests' small lite detector)"
fi
[ "$(id -u)" -eq 0 ] || die "run as root: apt-get, debootstrap and chroot need it"
[ -x "$PYTHON" ] || die "PYTHON=$PYTHON is not an executable Python (make the project's .venv first)"

# 1. host packages
missing=()
for pkg in qemu-user-static binfmt-support debootstrap; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    step "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -x "$QEMU" ] || die "$QEMU is missing after installing qemu-user-static"

# 2. the arm64 root
if [ ! -x "$ROOT/usr/bin/python3" ]; then
    step "debootstrap --foreign $SUITE arm64 into $ROOT"
    rm -rf "$ROOT"
    debootstrap --foreign --arch=arm64 --variant=minbase --include=python3,python3-pip "$SUITE" "$ROOT" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1 || die "debootstrap failed, see $WORK/debootstrap.log"
    step "unpacking $(ls "$ROOT"/var/cache/apt/archives/*.deb | wc -l) packages"
    for deb in "$ROOT"/var/cache/apt/archives/*.deb; do
        dpkg-deb -x "$deb" "$ROOT"
    done
fi
install -m 0755 "$QEMU" "$ROOT/usr/bin/qemu-aarch64-static"
arm() {  # an arm64 command in the root: chroot + explicit qemu (no binfmt_misc needed)
    chroot "$ROOT" /usr/bin/qemu-aarch64-static "$@"
}
step "emulated: $(arm /usr/bin/python3 -c 'import platform, sys; print(platform.machine(), "Python", sys.version.split()[0])')"
arm_py_version="$(arm /usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"

# 3. numpy + ncnn wheels for aarch64, the host's versions, installed offline into ROOT/opt/site
versions="$("$PYTHON" -c 'import ncnn, numpy; print(f"numpy=={numpy.__version__} ncnn=={ncnn.__version__}")')"
site=/opt/site
if ! arm /usr/bin/python3 -c "import sys; sys.path.insert(0, '$site'); import numpy, ncnn" 2>/dev/null; then
    step "pip download --platform manylinux2014_aarch64 / manylinux_2_28_aarch64 --only-binary=:all: $versions" \
        "(cp$arm_py_version)"
    rm -rf "$ROOT/wheels" "$ROOT$site"
    # shellcheck disable=SC2086 # two requirement words
    "$PYTHON" -m pip download -q --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
        --only-binary=:all: --python-version "$arm_py_version" --implementation cp --abi "cp$arm_py_version" \
        -d "$ROOT/wheels" $versions
    step "pip install --no-index (in the arm64 root): $(cd "$ROOT/wheels" && echo *.whl)"
    # shellcheck disable=SC2086
    arm /usr/bin/python3 -m pip install -q --no-index --find-links /wheels --target "$site" $versions
fi

# 4. the model and the picture
board="$ROOT/board"
rm -rf "$board"
mkdir -p "$board"
if [ $# -eq 2 ]; then
    param="$1"
    picture="$2"
    base="${param%.param}"
    for f in "$base.param" "$base.bin" "$base.json" "$picture"; do
        [ -f "$f" ] || die "$f does not exist"
    done
    model="$(basename "$base")"
    cp "$base.param" "$base.bin" "$base.json" "$board/"
    picture_name="$(basename "$picture")"
    cp "$picture" "$board/$picture_name"
else
    step "exporting the tests' small lite detector (128x128) and a generated picture"
    model=lite
    picture_name=picture.ppm
    (cd "$REPO" && OMP_NUM_THREADS=1 "$PYTHON" - "$board" <<'EOF'
import sys
from pathlib import Path

sys.path.insert(0, 'tests')
import deploy_fixtures as fx  # noqa: E402

from shufflenet_det.deploy.ncnn_export import export_detector_ncnn  # noqa: E402
from shufflenet_det.runtime.images import make_test_picture, write_ppm  # noqa: E402

board = Path(sys.argv[1])
lite = fx.spread_lite()
export_detector_ncnn(lite, board / 'lite', fx.images(lite, (128, 128), 2), verbose=False)
write_ppm(board / 'picture.ppm', make_test_picture(128, 128, seed=5))
EOF
    ) >"$WORK/export.log" 2>&1 || die "the export failed, see $WORK/export.log"
fi

# 5. the copied runtime on aarch64, the package's runtime on the host
mkdir -p "$board/runtime"
(cd "$REPO/shufflenet_det/runtime" && cp ./*.py "$board/runtime/")
args=(--threads 1 --bench 3 --warmup 1)
step "aarch64: PYTHONPATH=/board python -m runtime ncnn /board/$model.param --image /board/$picture_name ${args[*]}"
PYTHONPATH="/board:$site" arm /usr/bin/python3 -m runtime ncnn "/board/$model.param" --image "/board/$picture_name" \
    "${args[@]}" --out-json /board/aarch64.json
step "host: python -m shufflenet_det.runtime ncnn $model.param --image $picture_name ${args[*]}"
(cd "$board" && OMP_NUM_THREADS=1 "$PYTHON" -m shufflenet_det.runtime ncnn "$model.param" --image "$picture_name" \
    "${args[@]}" --out-json host.json)

# 6. compare
"$PYTHON" - "$board" "$model" <<'EOF'
import json
import platform
import sys
from pathlib import Path

import numpy as np

from shufflenet_det.deploy.parity import compare_detections

board, model = Path(sys.argv[1]), sys.argv[2]
arm, host, report = (json.loads((board / f'{name}.json').read_text()) for name in ('aarch64', 'host', model))


def dets(result):
    rows = result['detections']
    return dict(boxes=np.array([d['box'] for d in rows], np.float32).reshape(-1, 4),
                scores=np.array([d['score'] for d in rows], np.float32),
                labels=np.array([d['label'] for d in rows], np.int64))


res = compare_detections(dets(host), dets(arm), box_atol=1.0, score_atol=5e-3,
                         test_cfg=report['postprocess']['test_cfg'])
print(f"[emulate_aarch64] detections: aarch64 {len(arm['detections'])}, host ({platform.machine()}) "
      f"{len(host['detections'])}; largest differences {res.get('max_box_diff', float('nan')):.3f} px, "
      f"{res.get('max_score_diff', float('nan')):.2e} score; boundary cases {res.get('boundary')}; "
      f"passed {res['passed']}{'' if res['passed'] else ': ' + str(res.get('error'))}")
print(f"[emulate_aarch64] latency (1 thread): aarch64 emulated {arm['latency']['median_ms']:.1f} ms, "
      f"host {host['latency']['median_ms']:.2f} ms")
sys.exit(0 if res['passed'] and arm['detections'] else 1)
EOF
