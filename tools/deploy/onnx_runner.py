"""Run (and time) a detector exported by tools/deploy/export_onnx.py in ONNX Runtime - numpy + onnxruntime, no torch.

The command line of ``python -m shufflenet_det.runtime onnx`` (:mod:`shufflenet_det.runtime.cli`); on a board copy
the folder ``shufflenet_det/runtime/`` alone and run ``python -m runtime onnx ...`` (docs/deployment.md).

Examples::

    python tools/deploy/onnx_runner.py work_dirs/deploy/lite_raw.onnx --image demo.ppm --score-thr 0.3
    python tools/deploy/onnx_runner.py work_dirs/deploy/lite_raw.onnx --threads 2 --bench 100 --out-json r.json
"""
import sys

from shufflenet_det.runtime.cli import onnx_main as main
from shufflenet_det.runtime.errors import run_main

__all__ = ['main', 'run_main']

if __name__ == '__main__':
    sys.exit(run_main(main))
